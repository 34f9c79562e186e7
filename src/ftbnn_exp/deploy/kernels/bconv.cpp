// Binary 3x3/1x1 convolution on packed bits for x86-64, with the output step fused
// (folded BN, residual add, non-linear module, packing the signs for the next binary conv).
//
// Activations: NHWC bit planes, int64 [N, H, W, G, Wg]: bit c%64 of word c/64 of group g is
// [x > 0] ("signs") or [x != 0] ("nonzero") of channel g*Cg + c. Weights: [G, OB, K*K, Wg, 8]
// (8 output channels side by side, OB = ceil(Og / 8), missing channels all-zero words).
// One of three exact formulas per call (Appendix B; ftbnn_exp/deploy/bitops.py):
//   kind 0, inputs and weights without zeros: out = K_valid - 2 * sum popcount(x ^ w)
//   kind 1, inputs in {0, 1}, weights without zeros: out = 2 * sum popcount(x & w) - sum popcount(x)
//   kind 2, anything:  out = sum popcount(v) - 2 * sum popcount(v & (x ^ w)), v = nz_x & nz_w
// Paths, chosen at run time: 3 AVX-512 VPOPCNTDQ, 2 AVX-512BW (nibble table), 1 AVX2 (nibble
// table), 0 scalar POPCNT. Compiled with -ffp-contract=off: the epilogue rounds as PyTorch does.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cstdint>
#include <algorithm>
#include <mutex>
#include <vector>

namespace {

struct Args {
  const int64_t* xs; const int64_t* xn;          // input planes
  const int64_t* ws; const int64_t* wn;          // weight planes
  int64_t N, H, W, G, Wg, Cg, O, Og, OB, K, stride, pad, OH, OW, kind;
  const float* scale; const float* bias;          // per output channel
  const float* residual;                          // NCHW [N, O, OH, OW] or null
  int64_t act;                                    // 0 none, 1 relu, 2 prelu/fprelu
  const float* neg; const float* pos;             // slopes per channel (act 2)
  float* out;                                     // NCHW [N, O, OH, OW] or null
  int32_t* raw;                                   // NCHW int32 or null (no epilogue)
  int64_t* next_s; int64_t* next_n;               // next planes [N, OH, OW, G2, Wg2] or null
  int64_t G2, Wg2, Cg2;
  bool avx512;                                    // vector packing of the output bits
};

// One word's sign / nonzero bits of `count` (<= 64) consecutive channel values.
void pack_word_scalar(const float* src, int64_t count, uint64_t* sb, uint64_t* zb,
                      int64_t* negatives, int64_t* zeros) {
  for (int64_t b = 0; b < count; ++b) {
    *sb |= (uint64_t)(src[b] > 0.f) << b;
    *zb |= (uint64_t)(src[b] != 0.f) << b;
    *negatives += src[b] < 0.f;
    *zeros += src[b] == 0.f;
  }
}

__attribute__((target("avx512f,popcnt")))
void pack_word_avx512(const float* src, int64_t count, uint64_t* sb, uint64_t* zb,
                      int64_t* negatives, int64_t* zeros) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t b = 0; b < count; b += 16) {
    const __mmask16 live = count - b >= 16 ? (__mmask16)0xffff
                                           : (__mmask16)((1u << (count - b)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(live, src + b);
    const __mmask16 ne = _mm512_mask_cmp_ps_mask(live, v, zero, _CMP_NEQ_UQ);
    *sb |= (uint64_t)_mm512_mask_cmp_ps_mask(live, v, zero, _CMP_GT_OQ) << b;
    *zb |= (uint64_t)ne << b;
    *negatives += __builtin_popcount((unsigned)_mm512_mask_cmp_ps_mask(live, v, zero,
                                                                       _CMP_LT_OQ));
    *zeros += __builtin_popcount((unsigned)(live & ~ne));
  }
}

// Sign / nonzero bits of `pixels` pixels whose C channel values are contiguous (pixel-major),
// 64 channels of a group to a word; counts[0] += negatives, counts[1] += zeros.
void pack_pixels(const float* y, int64_t pixels, int64_t C, int64_t Cg, int64_t Wg,
                 int64_t* ps, int64_t* pn, int64_t* counts, bool avx512) {
  const int64_t G = C / Cg;
  const auto pack_word = avx512 ? pack_word_avx512 : pack_word_scalar;
  for (int64_t p = 0; p < pixels; ++p, y += C, ps += G * Wg, pn += G * Wg) {
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t j = 0; j < Wg; ++j) {
        uint64_t sb = 0, zb = 0;
        pack_word(y + g * Cg + j * 64, std::min<int64_t>(64, Cg - j * 64), &sb, &zb,
                  &counts[0], &counts[1]);
        ps[g * Wg + j] = (int64_t)sb;
        pn[g * Wg + j] = (int64_t)zb;
      }
    }
  }
}

// The output step of one output row, over all channels: raw integers, or the fused
// act(v * scale + bias + residual) written NCHW, with its sign / nonzero bits packed 64
// channels to a word for the next binary conv and its negatives and zeros counted.
// vals and ys are [O][OW].
// Cloned for AVX-512 and baseline x86-64, dispatched by the loader (GCC target_clones).
__attribute__((target_clones("arch=x86-64-v4", "default")))
void finish_row(const Args& a, int64_t n, int64_t oh, const int64_t* vals, float* ys,
                int64_t* counts) {
  const int64_t OW = a.OW;
  for (int64_t o = 0; o < a.O; ++o) {
    const int64_t at = ((n * a.O + o) * a.OH + oh) * OW;
    const int64_t* v = vals + o * OW;
    if (a.raw) {
      for (int64_t w = 0; w < OW; ++w) a.raw[at + w] = (int32_t)v[w];
      continue;
    }
    float* y = ys + o * OW;
    const float scale = a.scale[o], bias = a.bias[o];
    for (int64_t w = 0; w < OW; ++w) {
      float t = (float)v[w] * scale;
      y[w] = t + bias;
    }
    if (a.residual) for (int64_t w = 0; w < OW; ++w) y[w] = y[w] + a.residual[at + w];
    if (a.act == 1) {
      for (int64_t w = 0; w < OW; ++w) y[w] = y[w] > 0.f ? y[w] : 0.f;
    } else if (a.act == 2) {
      const float neg = a.neg[o], pos = a.pos[o];
      // A select of the slope, then one product: branch-free, and the same rounding as
      // where(y > 0, y * pos, y * neg).
      for (int64_t w = 0; w < OW; ++w) y[w] = y[w] * (y[w] > 0.f ? pos : neg);
    }
    if (a.out) for (int64_t w = 0; w < OW; ++w) a.out[at + w] = y[w];
  }
  if (a.raw || !a.next_s) return;
  float* pixel_major = ys + a.O * OW;  // second half of the buffer
  for (int64_t o = 0; o < a.O; ++o)
    for (int64_t w = 0; w < OW; ++w) pixel_major[w * a.O + o] = ys[o * OW + w];
  pack_pixels(pixel_major, OW, a.O, a.Cg2, a.Wg2,
              a.next_s + (n * a.OH + oh) * OW * a.G2 * a.Wg2,
              a.next_n + (n * a.OH + oh) * OW * a.G2 * a.Wg2, counts, a.avx512);
}

// The kernel body, instantiated once per instruction set below. VEC ops work on 8 uint64 lanes.
#define BCONV_KERNEL(NAME, TARGET, VEC, ZERO, LOAD, BCAST, XOR, AND, ADDPOP, LANES)              \
  __attribute__((target(TARGET))) void NAME##_rows(const Args& a, int64_t begin, int64_t end,   \
                                                    int64_t* counts) {                           \
    constexpr int64_t P = 16; /* output pixels sharing each weight load (8-16 measured best) */   \
    std::vector<int64_t> vals(a.O * a.OW), valid(a.OW), ones(a.OW * a.G);                        \
    std::vector<float> ys(2 * a.O * a.OW);                                                       \
    std::vector<int64_t> offsets(a.K * a.K * P);                                                 \
    for (int64_t row = begin; row < end; ++row) {                                                \
      const int64_t n = row / a.OH, oh = row % a.OH;                                             \
      for (int64_t ow = 0; ow < a.OW; ++ow) {                                                    \
        valid[ow] = 0;                                                                           \
        for (int64_t g = 0; g < a.G; ++g) ones[ow * a.G + g] = 0;                                \
        for (int64_t kh = 0; kh < a.K; ++kh) {                                                   \
          const int64_t ih = oh * a.stride - a.pad + kh;                                         \
          if (ih < 0 || ih >= a.H) continue;                                                     \
          for (int64_t kw = 0; kw < a.K; ++kw) {                                                 \
            const int64_t iw = ow * a.stride - a.pad + kw;                                       \
            if (iw < 0 || iw >= a.W) continue;                                                   \
            valid[ow] += 1;                                                                      \
            if (a.kind != 1) continue;                                                           \
            for (int64_t g = 0; g < a.G; ++g) {                                                  \
              const int64_t* x = a.xs + (((n * a.H + ih) * a.W + iw) * a.G + g) * a.Wg;          \
              for (int64_t j = 0; j < a.Wg; ++j)                                                 \
                ones[ow * a.G + g] += __builtin_popcountll((uint64_t)x[j]);                      \
            }                                                                                    \
          }                                                                                      \
        }                                                                                        \
      }                                                                                          \
      for (int64_t g = 0; g < a.G; ++g) {                                                        \
        for (int64_t ow0 = 0; ow0 < a.OW; ow0 += P) {                                            \
          /* input offsets of the P pixels at each kernel position (-1: padding) */              \
          for (int64_t kh = 0; kh < a.K; ++kh) {                                                 \
            const int64_t ih = oh * a.stride - a.pad + kh;                                       \
            for (int64_t kw = 0; kw < a.K; ++kw) {                                               \
              for (int64_t p = 0; p < P; ++p) {                                                  \
                const int64_t iw = (ow0 + p) * a.stride - a.pad + kw;                            \
                offsets[(kh * a.K + kw) * P + p] =                                               \
                    (ow0 + p < a.OW && ih >= 0 && ih < a.H && iw >= 0 && iw < a.W)               \
                        ? (((n * a.H + ih) * a.W + iw) * a.G + g) * a.Wg : -1;                   \
              }                                                                                  \
            }                                                                                    \
          }                                                                                      \
          for (int64_t ob = 0; ob < a.OB; ++ob) {                                                \
            VEC acc[P], acc2[P];                                                                 \
            for (int64_t p = 0; p < P; ++p) { acc[p] = ZERO; acc2[p] = ZERO; }                   \
            for (int64_t kk = 0; kk < a.K * a.K; ++kk) {                                         \
                const int64_t* pix = offsets.data() + kk * P;                                    \
                bool any = false;                                                                \
                for (int64_t p = 0; p < P; ++p) any = any || pix[p] >= 0;                        \
                if (!any) continue;                                                              \
                const int64_t wat = ((g * a.OB + ob) * a.K * a.K + kk) * a.Wg * 8;               \
                for (int64_t j = 0; j < a.Wg; ++j) {                                             \
                  const VEC w = LOAD(a.ws + wat + j * 8);                                        \
                  if (a.kind == 2) {                                                             \
                    const VEC wz = LOAD(a.wn + wat + j * 8);                                     \
                    for (int64_t p = 0; p < P; ++p) {                                            \
                      if (pix[p] < 0) continue;                                                  \
                      const VEC v = AND(BCAST(a.xn[pix[p] + j]), wz);                            \
                      acc[p] = ADDPOP(acc[p], v);                                                \
                      acc2[p] = ADDPOP(acc2[p], AND(v, XOR(BCAST(a.xs[pix[p] + j]), w)));        \
                    }                                                                            \
                  } else if (a.kind == 1) {                                                      \
                    for (int64_t p = 0; p < P; ++p)                                              \
                      if (pix[p] >= 0) acc[p] = ADDPOP(acc[p], AND(BCAST(a.xs[pix[p] + j]), w)); \
                  } else {                                                                       \
                    for (int64_t p = 0; p < P; ++p)                                              \
                      if (pix[p] >= 0) acc[p] = ADDPOP(acc[p], XOR(BCAST(a.xs[pix[p] + j]), w)); \
                  }                                                                              \
                }                                                                                \
            }                                                                                    \
            for (int64_t p = 0; p < P && ow0 + p < a.OW; ++p) {                                  \
              alignas(64) uint64_t lane[8], lane2[8];                                            \
              LANES(lane, acc[p]);                                                               \
              if (a.kind == 2) LANES(lane2, acc2[p]);                                            \
              const int64_t ow = ow0 + p;                                                        \
              for (int64_t l = 0; l < 8; ++l) {                                                  \
                const int64_t o = ob * 8 + l;                                                    \
                if (o >= a.Og) break;                                                            \
                int64_t value;                                                                   \
                if (a.kind == 0) value = valid[ow] * a.Cg - 2 * (int64_t)lane[l];                \
                else if (a.kind == 1) value = 2 * (int64_t)lane[l] - ones[ow * a.G + g];         \
                else value = (int64_t)lane[l] - 2 * (int64_t)lane2[l];                           \
                vals[(g * a.Og + o) * a.OW + ow] = value;                                        \
              }                                                                                  \
            }                                                                                    \
          }                                                                                      \
        }                                                                                        \
      }                                                                                          \
      finish_row(a, n, oh, vals.data(), ys.data(), counts);                                      \
    }                                                                                            \
  }                                                                                              \
  void NAME(const Args& a, int64_t* counts) {                                                    \
    std::mutex lock;                                                                             \
    at::parallel_for(0, a.N * a.OH, 1, [&](int64_t begin, int64_t end) {                         \
      int64_t local[2] = {0, 0};                                                                 \
      NAME##_rows(a, begin, end, local);                                                         \
      std::lock_guard<std::mutex> guard(lock);                                                   \
      counts[0] += local[0];                                                                     \
      counts[1] += local[1];                                                                     \
    });                                                                                          \
  }

// ---- scalar POPCNT: 8 lanes as a plain array
struct V8 { uint64_t v[8]; };
__attribute__((target("popcnt"))) inline V8 s_zero() { V8 r; for (int i = 0; i < 8; ++i) r.v[i] = 0; return r; }
__attribute__((target("popcnt"))) inline V8 s_load(const int64_t* p) { V8 r; for (int i = 0; i < 8; ++i) r.v[i] = (uint64_t)p[i]; return r; }
__attribute__((target("popcnt"))) inline V8 s_bcast(int64_t x) { V8 r; for (int i = 0; i < 8; ++i) r.v[i] = (uint64_t)x; return r; }
__attribute__((target("popcnt"))) inline V8 s_xor(V8 a, V8 b) { for (int i = 0; i < 8; ++i) a.v[i] ^= b.v[i]; return a; }
__attribute__((target("popcnt"))) inline V8 s_and(V8 a, V8 b) { for (int i = 0; i < 8; ++i) a.v[i] &= b.v[i]; return a; }
__attribute__((target("popcnt"))) inline V8 s_addpop(V8 acc, V8 x) { for (int i = 0; i < 8; ++i) acc.v[i] += __builtin_popcountll(x.v[i]); return acc; }
__attribute__((target("popcnt"))) inline void s_lanes(uint64_t* out, V8 a) { for (int i = 0; i < 8; ++i) out[i] = a.v[i]; }
BCONV_KERNEL(kernel_popcnt, "popcnt", V8, s_zero(), s_load, s_bcast, s_xor, s_and, s_addpop, s_lanes)

// ---- AVX2: two 256-bit halves, nibble-table popcount summed per 64-bit lane by vpsadbw
struct V2 { __m256i lo, hi; };
#define T2 "avx2,popcnt"
__attribute__((target(T2))) inline V2 a2_zero() { return {_mm256_setzero_si256(), _mm256_setzero_si256()}; }
__attribute__((target(T2))) inline V2 a2_load(const int64_t* p) { return {_mm256_loadu_si256((const __m256i*)p), _mm256_loadu_si256((const __m256i*)(p + 4))}; }
__attribute__((target(T2))) inline V2 a2_bcast(int64_t x) { __m256i b = _mm256_set1_epi64x(x); return {b, b}; }
__attribute__((target(T2))) inline V2 a2_xor(V2 a, V2 b) { return {_mm256_xor_si256(a.lo, b.lo), _mm256_xor_si256(a.hi, b.hi)}; }
__attribute__((target(T2))) inline V2 a2_and(V2 a, V2 b) { return {_mm256_and_si256(a.lo, b.lo), _mm256_and_si256(a.hi, b.hi)}; }
__attribute__((target(T2))) inline __m256i a2_pop(__m256i v) {
  const __m256i table = _mm256_setr_epi8(0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4,0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i counts = _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(v, low)),
                                   _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
  return _mm256_sad_epu8(counts, _mm256_setzero_si256());
}
__attribute__((target(T2))) inline V2 a2_addpop(V2 acc, V2 x) { return {_mm256_add_epi64(acc.lo, a2_pop(x.lo)), _mm256_add_epi64(acc.hi, a2_pop(x.hi))}; }
__attribute__((target(T2))) inline void a2_lanes(uint64_t* out, V2 a) { _mm256_storeu_si256((__m256i*)out, a.lo); _mm256_storeu_si256((__m256i*)(out + 4), a.hi); }
BCONV_KERNEL(kernel_avx2, T2, V2, a2_zero(), a2_load, a2_bcast, a2_xor, a2_and, a2_addpop, a2_lanes)

// ---- AVX-512BW: one 512-bit vector, nibble table
#define TBW "avx512f,avx512bw,popcnt"
__attribute__((target(TBW))) inline __m512i bw_pop(__m512i v) {
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4));
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512i counts = _mm512_add_epi8(_mm512_shuffle_epi8(table, _mm512_and_si512(v, low)),
                                   _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), low)));
  return _mm512_sad_epu8(counts, _mm512_setzero_si512());
}
#define BW_ZERO _mm512_setzero_si512()
#define BW_LOAD(p) _mm512_loadu_si512((const void*)(p))
#define BW_BCAST(x) _mm512_set1_epi64(x)
#define BW_ADDPOP(acc, x) _mm512_add_epi64(acc, bw_pop(x))
#define BW_LANES(out, a) _mm512_storeu_si512((void*)(out), a)
BCONV_KERNEL(kernel_avx512bw, TBW, __m512i, BW_ZERO, BW_LOAD, BW_BCAST, _mm512_xor_si512,
             _mm512_and_si512, BW_ADDPOP, BW_LANES)

// ---- AVX-512 VPOPCNTDQ: vpopcntq per 64-bit lane
#define TVP "avx512f,avx512vpopcntdq,popcnt"
#define VP_ADDPOP(acc, x) _mm512_add_epi64(acc, _mm512_popcnt_epi64(x))
BCONV_KERNEL(kernel_vpopcntdq, TVP, __m512i, BW_ZERO, BW_LOAD, BW_BCAST, _mm512_xor_si512,
             _mm512_and_si512, VP_ADDPOP, BW_LANES)

const char* const PATHS[] = {"popcnt", "avx2", "avx512bw", "avx512_vpopcntdq"};

bool path_supported(int64_t path) {
  __builtin_cpu_init();
  switch (path) {
    case 0: return __builtin_cpu_supports("popcnt");
    case 1: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    case 2: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    case 3: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
  }
  return false;
}

}  // namespace

std::vector<std::string> supported_paths() {
  std::vector<std::string> names;
  for (int64_t p = 0; p < 4; ++p) if (path_supported(p)) names.push_back(PATHS[p]);
  return names;
}

// Pack a float NCHW tensor into NHWC sign / nonzero planes with `groups` channel groups.
std::vector<torch::Tensor> pack_nhwc(torch::Tensor x, int64_t groups) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat, "pack_nhwc: float NCHW input");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Cg = C / groups, Wg = (Cg + 63) / 64;
  auto pixel_major = x.permute({0, 2, 3, 1}).contiguous();  // NHWC
  auto s = torch::empty({N, H, W, groups, Wg}, torch::kLong);
  auto z = torch::empty({N, H, W, groups, Wg}, torch::kLong);
  auto counts = torch::zeros({2}, torch::kLong);
  const bool avx512 = path_supported(2);
  pack_pixels(pixel_major.data_ptr<float>(), N * H * W, C, Cg, Wg, s.data_ptr<int64_t>(),
              z.data_ptr<int64_t>(), counts.data_ptr<int64_t>(), avx512);
  return {s, z, counts};
}

// The binary conv. Empty tensors stand for "absent" (residual, slopes, next planes, epilogue).
std::vector<torch::Tensor> bconv(torch::Tensor xs, torch::Tensor xn, torch::Tensor ws,
                                 torch::Tensor wn, int64_t out_channels, int64_t cin_per_group,
                                 int64_t kernel, int64_t stride, int64_t pad, int64_t kind,
                                 int64_t path, torch::Tensor scale, torch::Tensor bias,
                                 torch::Tensor residual, int64_t act, torch::Tensor neg,
                                 torch::Tensor pos, int64_t next_groups) {
  TORCH_CHECK(path >= 0 && path < 4 && path_supported(path), "bconv: path not supported here");
  Args a{};
  a.xs = xs.data_ptr<int64_t>(); a.xn = xn.data_ptr<int64_t>();
  a.ws = ws.data_ptr<int64_t>(); a.wn = wn.data_ptr<int64_t>();
  a.N = xs.size(0); a.H = xs.size(1); a.W = xs.size(2); a.G = xs.size(3); a.Wg = xs.size(4);
  a.Cg = cin_per_group; a.O = out_channels; a.Og = out_channels / a.G; a.OB = ws.size(1);
  a.K = kernel; a.stride = stride; a.pad = pad; a.kind = kind;
  a.avx512 = path >= 2;
  a.OH = (a.H + 2 * pad - kernel) / stride + 1; a.OW = (a.W + 2 * pad - kernel) / stride + 1;
  torch::Tensor out, raw, ns, nn_;
  if (scale.numel() == 0) {
    raw = torch::empty({a.N, a.O, a.OH, a.OW}, torch::kInt);
    a.raw = raw.data_ptr<int32_t>();
  } else {
    a.scale = scale.data_ptr<float>(); a.bias = bias.data_ptr<float>();
    a.residual = residual.numel() ? residual.data_ptr<float>() : nullptr;
    a.act = act;
    a.neg = neg.numel() ? neg.data_ptr<float>() : nullptr;
    a.pos = pos.numel() ? pos.data_ptr<float>() : nullptr;
    out = torch::empty({a.N, a.O, a.OH, a.OW}, torch::kFloat);
    a.out = out.data_ptr<float>();
    if (next_groups > 0) {
      a.G2 = next_groups; a.Cg2 = a.O / next_groups; a.Wg2 = (a.Cg2 + 63) / 64;
      ns = torch::empty({a.N, a.OH, a.OW, a.G2, a.Wg2}, torch::kLong);
      nn_ = torch::empty({a.N, a.OH, a.OW, a.G2, a.Wg2}, torch::kLong);
      a.next_s = ns.data_ptr<int64_t>(); a.next_n = nn_.data_ptr<int64_t>();
    }
  }
  auto counts = torch::zeros({2}, torch::kLong);  // negatives, zeros of the fused output
  int64_t* c = counts.data_ptr<int64_t>();
  switch (path) {
    case 0: kernel_popcnt(a, c); break;
    case 1: kernel_avx2(a, c); break;
    case 2: kernel_avx512bw(a, c); break;
    case 3: kernel_vpopcntdq(a, c); break;
  }
  if (a.raw) return {raw};
  if (a.next_s) return {out, ns, nn_, counts};
  return {out};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("supported_paths", &supported_paths, "instruction-set paths this CPU runs");
  m.def("pack_nhwc", &pack_nhwc, "float NCHW -> NHWC sign and nonzero bit planes");
  m.def("bconv", &bconv, "binary convolution on bit planes, optional fused output");
}
