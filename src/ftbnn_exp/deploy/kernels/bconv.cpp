// Binary 3x3/1x1 convolution on packed bits for x86-64, with the output step fused
// (folded BN, residual add, non-linear module, packing the signs for the next binary conv).
//
// Everything is pixel-major (NHWC), so nothing is transposed between layers; torch sees the
// outputs as NCHW tensors in channels_last memory. Activations: NHWC bit planes, int64
// [N, H, W, G, Wg]: bit c%64 of word c/64 of group g is [x > 0] ("signs") or [x != 0]
// ("nonzero") of channel g*Cg + c. Weights: [G, OB, K*K, Wg, 8]
// (8 output channels side by side, OB = ceil(Og / 8), missing channels all-zero words).
// Convs whose groups do not fill their words (36, 72 or 144 channels a group; the caller
// decides, ftbnn_exp.deploy.fast.uses_taps) may also come tap-packed (`taps`): each output
// channel's K*K*Cg weight bits back to back, ceil(K*K*Cg / 64) words instead of
// K*K*ceil(Cg / 64), the input window gathered the same way per pixel (tap_rows), so no
// popcount is spent on padding.
// One of three exact formulas per call (Appendix B; ftbnn_exp/deploy/bitops.py):
//   kind 0, inputs and weights without zeros: out = K_valid - 2 * sum popcount(x ^ w)
//   kind 1, inputs in {0, 1}, weights without zeros:
//           out = 2 * sum popcount(x & w) - sum popcount(x)
//   kind 2, anything:  out = sum popcount(v) - 2 * sum popcount(v & (x ^ w)), v = nz_x & nz_w
// Paths, chosen at run time: 3 AVX-512 VPOPCNTDQ, 2 AVX-512BW (nibble table, and a carry-save
// adder tree over 3x3 windows), 1 AVX2 (nibble table), 0 scalar POPCNT; each packs bits and
// runs the output step with its own instruction set (AVX-512, AVX2, scalar). Compiled with
// -ffp-contract=off: the epilogue rounds as PyTorch does.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <chrono>
#include <vector>

// PyTorch's OpenMP runtime (libgomp, loaded globally by torch): each thread's own thread
// count (an OpenMP ICV), which ATen and oneDNN read before they start a parallel region.
extern "C" {
void omp_set_num_threads(int threads);
int omp_get_max_threads(void);
}

namespace {

struct Args {
  const int64_t* xs; const int64_t* xn;          // input planes
  const int64_t* ws; const int64_t* wn;          // weight planes
  int64_t N, H, W, G, Wg, Cg, O, Og, OB, K, stride, pad, OH, OW, kind;
  const float* scale; const float* bias;          // per output channel
  const float* residual;                          // NHWC [N, OH, OW, O] or null
  int64_t act;                                    // 0 none, 1 relu, 2 prelu/fprelu
  const float* neg; const float* pos;             // slopes per channel (act 2)
  float* out;                                     // NHWC [N, OH, OW, O] or null
  int32_t* raw;                                   // NHWC int32 or null (no epilogue)
  int64_t* next_s; int64_t* next_n;               // next planes [N, OH, OW, G2, Wg2] or null
  int64_t G2, Wg2, Cg2;
  const int64_t* taps;                            // tap-packed weights [G, OB, T, 8] or null
  const int64_t* tap_ones;                        // their ones per tap [G, OB, K*K, 8]
  int64_t T;                                      // words of a tap-packed window (0: none)
  int64_t simd;                                   // packing and output step: 0 scalar,
                                                  // 1 AVX2, 2 AVX-512 (F/DQ/BW/VL)
  int64_t threads;                                // at most this many threads
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

// The first n (<= 8) of AVX2's 8 lanes, as a mask for its masked loads and stores.
__attribute__((target("avx2"))) inline __m256i first_lanes(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 8 channels with AVX2: a masked load where fewer remain (masked lanes read as 0 and are
// dropped from the bits and counts).
__attribute__((target("avx2"))) inline __m256 load8(const float* p, int64_t n, __m256i live) {
  return n == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, live);
}

// The same with AVX2, 8 channels to a compare.
__attribute__((target("avx2,popcnt")))
void pack_word_avx2(const float* src, int64_t count, uint64_t* sb, uint64_t* zb,
                    int64_t* negatives, int64_t* zeros) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t b = 0; b < count; b += 8) {
    const int64_t n = std::min<int64_t>(8, count - b);
    const unsigned live = (1u << n) - 1;
    const __m256 v = load8(src + b, n, first_lanes(n));
    const unsigned ne = live & ~(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_EQ_OQ));
    *sb |= (uint64_t)(live & (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ)))
           << b;
    *zb |= (uint64_t)ne << b;
    *negatives += __builtin_popcount(
        live & (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)));
    *zeros += __builtin_popcount(live & ~ne);
  }
}

// Sign / nonzero bits of `pixels` pixels whose C channel values are contiguous (pixel-major),
// 64 channels of a group to a word; counts[0] += negatives, counts[1] += zeros.
void pack_pixels(const float* y, int64_t pixels, int64_t C, int64_t Cg, int64_t Wg,
                 int64_t* ps, int64_t* pn, int64_t* counts, int64_t simd) {
  const int64_t G = C / Cg;
  const auto pack_word = simd == 2 ? pack_word_avx512
                         : simd == 1 ? pack_word_avx2 : pack_word_scalar;
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

// The output step of `pixels` consecutive output pixels, pixel-major (NHWC): raw integers, or
// the fused act(v * scale + bias + residual) written NHWC, its sign / nonzero bits packed 64
// channels to a word for the next binary conv and its negatives and zeros counted.
// vals is [pixels][O]. Cloned for AVX-512 and baseline x86-64, dispatched by the loader (GCC
// target_clones).
__attribute__((target_clones("arch=x86-64-v4", "default")))
void finish_pixels_any(const Args& a, int64_t first, int64_t pixels, const int64_t* vals,
                       int64_t* counts) {
  const int64_t O = a.O;
  if (a.raw) {
    int32_t* __restrict raw = a.raw + first * O;
    for (int64_t i = 0; i < pixels * O; ++i) raw[i] = (int32_t)vals[i];
    return;
  }
  const float* __restrict scale = a.scale;
  const float* __restrict bias = a.bias;
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t* __restrict v = vals + p * O;
    float* __restrict y = a.out + (first + p) * O;
    for (int64_t o = 0; o < O; ++o) {
      const float t = (float)v[o] * scale[o];
      y[o] = t + bias[o];
    }
    if (a.residual) {
      const float* __restrict r = a.residual + (first + p) * O;
      for (int64_t o = 0; o < O; ++o) y[o] = y[o] + r[o];
    }
    if (a.act == 1) {
      for (int64_t o = 0; o < O; ++o) y[o] = y[o] > 0.f ? y[o] : 0.f;
    } else if (a.act == 2) {
      const float* __restrict neg = a.neg;
      const float* __restrict pos = a.pos;
      // A select of the slope, then one product: branch-free, and the same rounding as
      // where(y > 0, y * pos, y * neg).
      for (int64_t o = 0; o < O; ++o) y[o] = y[o] * (y[o] > 0.f ? pos[o] : neg[o]);
    }
  }
  if (!a.next_s) return;
  pack_pixels(a.out + first * O, pixels, O, a.Cg2, a.Wg2, a.next_s + first * a.G2 * a.Wg2,
              a.next_n + first * a.G2 * a.Wg2, counts, a.simd);
}

// One output pixel q of the vector output steps: its values [O], its output and residual, and
// its next planes as Piece-sized pieces of the words (8 or 16 channels' bits each), the unused
// high bits of each group's last word zeroed; the groups to pack by (1 with no next planes).
template <typename Piece> struct PixelOut {
  const int64_t* v;
  float* y;
  const float* r;
  Piece* ps = nullptr;
  Piece* pn = nullptr;
  int64_t groups = 1, per_group;
  PixelOut(const Args& a, int64_t q, const int64_t* values)
      : v(values), y(a.out + q * a.O), r(a.residual ? a.residual + q * a.O : nullptr),
        per_group(a.O) {
    if (!a.next_s) return;
    const int64_t words = a.G2 * a.Wg2;
    ps = (Piece*)(a.next_s + q * words);
    pn = (Piece*)(a.next_n + q * words);
    if (a.Cg2 % 64) {
      std::fill(a.next_s + q * words, a.next_s + (q + 1) * words, 0);
      std::fill(a.next_n + q * words, a.next_n + (q + 1) * words, 0);
    }
    groups = a.G2;
    per_group = a.O / a.G2;
  }
};

// The same output step in one pass, 16 channels at a time (a masked tail where a group's
// channels are not a multiple of 16): the bits of 16 channels are one 16-bit piece of a
// plane word.
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,popcnt")))
void finish_pixels_avx512(const Args& a, int64_t first, int64_t pixels, const int64_t* vals,
                          int64_t* counts) {
  const int64_t O = a.O;
  const __m512 zero = _mm512_setzero_ps();
  const __m512i one = _mm512_set1_epi32(1);
  __m512i negatives = _mm512_setzero_si512(), zeros = _mm512_setzero_si512();  // per lane
  for (int64_t p = 0; p < pixels; ++p) {
    const PixelOut<uint16_t> out(a, first + p, vals + p * O);
    const auto [v, y, r, ps, pn, groups, per_group] = out;
    for (int64_t g2 = 0; g2 < groups; ++g2) {
      for (int64_t c = 0; c < per_group; c += 16) {
        const int64_t o = g2 * per_group + c, n = std::min<int64_t>(16, per_group - c);
        const __mmask16 live = n == 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
        const __m256 low = _mm512_cvtepi64_ps(
            _mm512_maskz_loadu_epi64((__mmask8)(live & 0xff), (const void*)(v + o)));
        const __m256 high = _mm512_cvtepi64_ps(
            _mm512_maskz_loadu_epi64((__mmask8)(live >> 8), (const void*)(v + o + 8)));
        __m512 t = _mm512_insertf32x8(_mm512_castps256_ps512(low), high, 1);
        t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(live, a.scale + o));
        t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(live, a.bias + o));
        if (r) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(live, r + o));
        const __mmask16 above = _mm512_mask_cmp_ps_mask(live, t, zero, _CMP_GT_OQ);
        if (a.act == 1) t = _mm512_maskz_mov_ps(above, t);
        else if (a.act == 2)
          t = _mm512_mul_ps(t, _mm512_mask_blend_ps(above, _mm512_maskz_loadu_ps(live, a.neg + o),
                                                    _mm512_maskz_loadu_ps(live, a.pos + o)));
        _mm512_mask_storeu_ps(y + o, live, t);
        if (!ps) continue;
        const __mmask16 is_zero = _mm512_mask_cmp_ps_mask(live, t, zero, _CMP_EQ_OQ);
        const int64_t at = g2 * a.Wg2 * 4 + c / 16;  // 16-bit piece of the group's words
        ps[at] = (uint16_t)_mm512_mask_cmp_ps_mask(live, t, zero, _CMP_GT_OQ);
        // NaN counts as nonzero, as in pack_word
        pn[at] = (uint16_t)(_knot_mask16(is_zero) & live);
        negatives = _mm512_mask_add_epi32(
            negatives, _mm512_mask_cmp_ps_mask(live, t, zero, _CMP_LT_OQ), negatives, one);
        zeros = _mm512_mask_add_epi32(zeros, is_zero, zeros, one);
      }
    }
  }
  counts[0] += _mm512_reduce_add_epi32(negatives);
  counts[1] += _mm512_reduce_add_epi32(zeros);
}

// The output step with AVX2, 8 channels at a time: each 8 channels' bits are one byte of a
// plane word. The int64 values fit in int32 (|v| <= K * K * C), so their low halves convert
// to the same floats as (float)v.
__attribute__((target("avx2,popcnt")))
void finish_pixels_avx2(const Args& a, int64_t first, int64_t pixels, const int64_t* vals,
                        int64_t* counts) {
  const int64_t O = a.O;
  const __m256 zero = _mm256_setzero_ps();
  const __m256i evens = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);  // low halves first
  for (int64_t p = 0; p < pixels; ++p) {
    const PixelOut<uint8_t> out(a, first + p, vals + p * O);
    const auto [v, y, r, ps, pn, groups, per_group] = out;
    for (int64_t g2 = 0; g2 < groups; ++g2) {
      for (int64_t c = 0; c < per_group; c += 8) {
        const int64_t o = g2 * per_group + c, n = std::min<int64_t>(8, per_group - c);
        const __m256i live = first_lanes(n);
        const unsigned bits = (1u << n) - 1;
        __m256i low, high;
        if (n == 8) {
          low = _mm256_loadu_si256((const __m256i*)(v + o));
          high = _mm256_loadu_si256((const __m256i*)(v + o + 4));
        } else {
          low = _mm256_maskload_epi64((const long long*)(v + o),
                                      _mm256_cvtepi32_epi64(_mm256_castsi256_si128(live)));
          high = _mm256_maskload_epi64((const long long*)(v + o + 4),
                                       _mm256_cvtepi32_epi64(_mm256_extracti128_si256(live, 1)));
        }
        const __m256i halves = _mm256_permute2x128_si256(
            _mm256_permutevar8x32_epi32(low, evens), _mm256_permutevar8x32_epi32(high, evens),
            0x20);
        __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(halves), load8(a.scale + o, n, live));
        t = _mm256_add_ps(t, load8(a.bias + o, n, live));
        if (r) t = _mm256_add_ps(t, load8(r + o, n, live));
        const __m256 above = _mm256_cmp_ps(t, zero, _CMP_GT_OQ);
        if (a.act == 1) t = _mm256_and_ps(t, above);
        else if (a.act == 2)
          t = _mm256_mul_ps(t, _mm256_blendv_ps(load8(a.neg + o, n, live),
                                                load8(a.pos + o, n, live), above));
        if (n == 8) _mm256_storeu_ps(y + o, t);
        else _mm256_maskstore_ps(y + o, live, t);
        if (!ps) continue;
        const unsigned is_zero =
            bits & (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(t, zero, _CMP_EQ_OQ));
        const int64_t at = g2 * a.Wg2 * 8 + c / 8;  // byte of the group's words
        ps[at] = (uint8_t)(bits & (unsigned)_mm256_movemask_ps(
                                      _mm256_cmp_ps(t, zero, _CMP_GT_OQ)));
        pn[at] = (uint8_t)(bits & ~is_zero);  // NaN counts as nonzero, as in pack_word
        counts[0] += __builtin_popcount(
            bits & (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(t, zero, _CMP_LT_OQ)));
        counts[1] += __builtin_popcount(is_zero);
      }
    }
  }
}

// vals arrives as the kernels write it, [pixels][Opad]: output channel o of group g at
// g * OB * 8 + o % Og.
void finish_pixels(const Args& a, int64_t first, int64_t pixels, int64_t* vals,
                   int64_t* counts) {
  const int64_t O = a.O, Opad = a.G * a.OB * 8;
  if (Opad != O) {  // drop the padding lanes, a group's channels at a time; in place, as no
                    // write passes a later read (no per-element division: it cost more than
                    // the popcounts where O_g is not a multiple of 8)
    for (int64_t p = 0; p < pixels; ++p)
      for (int64_t g = 0; g < a.G; ++g)
        std::memmove(vals + p * O + g * a.Og, vals + p * Opad + g * a.OB * 8,
                     a.Og * sizeof(int64_t));
  }
  if (a.simd == 2 && !a.raw)
    finish_pixels_avx512(a, first, pixels, vals, counts);
  else if (a.simd == 1 && !a.raw)
    finish_pixels_avx2(a, first, pixels, vals, counts);
  else
    finish_pixels_any(a, first, pixels, vals, counts);
}

// Where each output pixel of a block of P reads its input: offsets [K*K][P] of the input
// pixel's first word (-1: padding or past the end), the number of kernel positions inside the
// input, and for {0, 1} inputs the ones under the window per group. Interior pixels, most of
// them, take fixed steps from their window's corner; only border pixels test each position.
struct Block {
  std::vector<int64_t> offsets, valid, ones, steps;
  std::vector<int8_t> any, all;  // some / every pixel of the block inside at a kernel position
  Block(const Args& a, int64_t P)
      : offsets(a.K * a.K * P), valid(P), ones(P * a.G), steps(a.K * a.K), any(a.K * a.K),
        all(a.K * a.K) {
    for (int64_t kk = 0; kk < a.K * a.K; ++kk)
      steps[kk] = (kk / a.K * a.W + kk % a.K) * a.G * a.Wg;
  }

  __attribute__((target("popcnt")))
  void plan(const Args& a, int64_t first, int64_t count, bool count_ones) {
    const int64_t P = (int64_t)valid.size(), KK = a.K * a.K, GW = a.G * a.Wg;
    std::fill(any.begin(), any.end(), 0);
    std::fill(all.begin(), all.end(), 1);
    std::fill(ones.begin(), ones.end(), 0);
    int64_t n = first / (a.OH * a.OW), oh = first % (a.OH * a.OW) / a.OW, ow = first % a.OW;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t ih0 = oh * a.stride - a.pad, iw0 = ow * a.stride - a.pad;
      const int64_t corner = ((n * a.H + ih0) * a.W + iw0) * GW;
      const bool interior = ih0 >= 0 && ih0 + a.K <= a.H && iw0 >= 0 && iw0 + a.K <= a.W;
      valid[p] = 0;
      if (p < count && interior && !count_ones) {
        for (int64_t kk = 0; kk < KK; ++kk) offsets[kk * P + p] = corner + steps[kk];
        std::fill(any.begin(), any.end(), 1);
        valid[p] = KK;
      } else for (int64_t kk = 0; kk < KK; ++kk) {
        const int64_t ih = ih0 + kk / a.K, iw = iw0 + kk % a.K;
        const bool inside = p < count &&
                            (interior || (ih >= 0 && ih < a.H && iw >= 0 && iw < a.W));
        offsets[kk * P + p] = inside ? corner + steps[kk] : -1;
        any[kk] |= inside;
        all[kk] &= inside;
        valid[p] += inside;
        if (!inside || !count_ones) continue;
        for (int64_t g = 0; g < a.G; ++g)
          for (int64_t j = 0; j < a.Wg; ++j)
            ones[p * a.G + g] +=
                __builtin_popcountll((uint64_t)a.xs[corner + steps[kk] + g * a.Wg + j]);
      }
      if (++ow == a.OW) {
        ow = 0;
        if (++oh == a.OH) { oh = 0; ++n; }
      }
    }
  }
};

// Bits appended to a row of words, least significant first.
struct BitRow {
  uint64_t* row;
  unsigned __int128 buffer = 0;
  int64_t filled = 0;
  // The low n (1..64) bits of v, whose higher bits are zero.
  inline void put(uint64_t v, int64_t n) {
    buffer |= (unsigned __int128)v << filled;
    filled += n;
    if (filled >= 64) {
      *row++ = (uint64_t)buffer;
      buffer >>= 64;
      filled -= 64;
    }
  }
  inline void end() {
    if (filled > 0) *row = (uint64_t)buffer;
  }
};

inline uint64_t low_bits(int64_t n) { return n == 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1; }

// The tap-packed windows of group g for a block's P pixels: row p holds the Cg bits of each
// of its K*K input pixels back to back (T words, the last one's high bits zero); a kernel
// position outside the input gives zeros (kind 0 then corrects by the weights' ones there).
void tap_rows(const Args& a, const Block& b, int64_t g, int64_t P, uint64_t* rows) {
  const int64_t KK = a.K * a.K, last = a.Cg - (a.Wg - 1) * 64;  // bits in a pixel's last word
  const int64_t* xs = a.xs + g * a.Wg;
  const uint64_t mask = low_bits(last);
  for (int64_t p = 0; p < P; ++p) {
    BitRow row{rows + p * a.T};
    const int64_t* at = b.offsets.data() + p;  // kernel position kk's word: at[kk * P]
    if (a.Wg == 1) {  // one word a position (the common case: no inner loop)
      for (int64_t kk = 0; kk < KK; ++kk)
        row.put(at[kk * P] < 0 ? 0 : (uint64_t)xs[at[kk * P]] & mask, last);
    } else {
      for (int64_t kk = 0; kk < KK; ++kk)
        for (int64_t j = 0; j < a.Wg; ++j) {
          const bool final = j == a.Wg - 1;
          const uint64_t v = at[kk * P] < 0 ? 0 : (uint64_t)xs[at[kk * P] + j];
          row.put(final ? v & mask : v, final ? last : 64);
        }
    }
    row.end();
  }
}

// Kind 0 tap-packed, at pixels with kernel positions outside the input: x was zeroed there,
// so x ^ w counted the weights' ones there, each taken twice off K_valid * Cg - 2 * popcount;
// given back.
void tap_outside(const Args& a, const Block& b, int64_t g, int64_t ob, int64_t count,
                 int64_t* out, int64_t stride) {
  const int64_t KK = a.K * a.K, P = (int64_t)b.valid.size();
  const int64_t* ones = a.tap_ones + (g * a.OB + ob) * KK * 8;
  for (int64_t p = 0; p < count; ++p) {
    if (b.valid[p] == KK) continue;
    for (int64_t kk = 0; kk < KK; ++kk)
      if (b.offsets[kk * P + p] < 0)
        for (int64_t l = 0; l < 8; ++l) out[p * stride + l] += 2 * ones[kk * 8 + l];
  }
}

// Output pixels per block: each weight load serves them all (8-16 measured best; their
// accumulators stay in registers).
constexpr int64_t PIXELS = 16;

// A path's own code for one block of 8 output channels of a block of pixels, or false.
template <int KIND>
inline bool no_window(const Args&, const Block&, int64_t, int64_t, int64_t, int64_t*, int64_t) {
  return false;
}

// The kernel body, instantiated once per instruction set below. VEC ops work on 8 uint64
// lanes, one per output channel of a block of 8; each weight load serves P output pixels.
// Pixels run in blocks of P over the flattened N * OH * OW outputs, so a block may span rows.
// Threads take chunks of a layer's pixel blocks from a shared counter as they come free, and
// the caller waits for the chunks to be done, not for every thread to arrive: a worker the OS
// deschedules (a busy machine) delays the layer by at most the chunk it holds, and one that
// wakes after the layer is done finds nothing left and sleeps again. Idle workers spin for
// SPIN (100 us) and then sleep on a condition variable, bounded unlike OpenMP's spinning
// barriers (libgomp: 300,000 rounds by default), which made all cores slower than one on a
// loaded machine. A layer too small to split runs on fewer threads: each gets
// MIN_THREAD_WORDS 64-bit word popcounts at least (a pool wake-up's worth: ~25 us of an
// AVX-512 core), so a 7x7 layer of 512 channels, 4 blocks of 16 pixels, runs on 2 threads and
// a 64-channel layer gets 29 blocks a thread; MIN_BLOCKS_PER_THREAD blocks where a block's
// work is not known.
constexpr int64_t MIN_BLOCKS_PER_THREAD = 4;
constexpr int64_t MIN_THREAD_WORDS = int64_t(1) << 18;
constexpr int64_t CHUNKS_PER_THREAD = 8;

using ChunkBody = std::function<void(int64_t, int64_t, int64_t*)>;

struct Layer {
  ChunkBody body;  // referenced only while chunks remain, i.e. while the caller waits
  int64_t blocks, chunk;
  std::atomic<int64_t> next{0}, done{0}, negatives{0}, zeros{0};

  // Run chunks until none is left; true if this call finished the layer's last chunk.
  bool work() {
    bool last = false;
    for (int64_t begin = next.fetch_add(chunk); begin < blocks; begin = next.fetch_add(chunk)) {
      const int64_t end = std::min(begin + chunk, blocks);
      int64_t local[2] = {0, 0};
      body(begin, end, local);
      negatives.fetch_add(local[0]);
      zeros.fetch_add(local[1]);
      last = done.fetch_add(end - begin) + (end - begin) == blocks;
    }
    return last;
  }
};

// How long a thread spins (pausing, never yielding its core to the OS) for what it waits
// on before it sleeps: a network's layers come back to back, and a futex wake-up of a sleeping
// thread took tens of microseconds on a VM, a tenth of a small layer. Bounded, so a
// process beside still gets the core within this long after a layer. Measured on 2 cores
// (FTBNN-18's 3x3 convs, 2 threads / 1 thread, interleaved): 0.68-0.76 sleeping at once,
// 0.57-0.68 after 100 us of spinning, 0.55-0.66 after 300 us.
constexpr auto SPIN = std::chrono::microseconds(100);

template <typename Ready> bool spin_until(Ready ready) {
  const auto until = std::chrono::steady_clock::now() + SPIN;
  for (int64_t i = 1;; ++i) {
    if (ready()) return true;
    _mm_pause();
    if (i % 64 == 0 && std::chrono::steady_clock::now() > until) return false;
  }
}

class Pool {
 public:
  static Pool& instance() {
    static Pool pool;
    return pool;
  }

  // Run `layer` on `threads` threads, the caller among them.
  void run(const std::shared_ptr<Layer>& layer, int64_t threads) {
    {
      std::lock_guard<std::mutex> guard(lock_);
      while ((int64_t)workers_.size() < threads - 1)
        workers_.emplace_back([this] { serve(); });
      layer_ = layer;
      wanted_ = threads - 1;
      ++generation_;
    }
    wake_.notify_all();
    layer->work();
    const auto finished = [&] { return layer->done.load() == layer->blocks; };
    spin_until(finished);
    std::unique_lock<std::mutex> guard(lock_);
    finished_.wait(guard, finished);
    layer_.reset();
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> guard(lock_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

 private:
  void serve() {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Layer> layer;
      spin_until([&] { return generation_.load() != seen || stop_.load(); });
      {
        std::unique_lock<std::mutex> guard(lock_);
        wake_.wait(guard, [&] { return stop_ || (generation_ != seen && wanted_ > 0); });
        if (stop_) return;
        seen = generation_;
        --wanted_;
        layer = layer_;
      }
      if (layer && layer->work()) {
        std::lock_guard<std::mutex> guard(lock_);  // the caller checks `done` under the lock
        finished_.notify_all();
      }
    }
  }

  std::mutex lock_;
  std::condition_variable wake_, finished_;
  std::vector<std::thread> workers_;
  std::shared_ptr<Layer> layer_;
  std::atomic<uint64_t> generation_{0};  // written under lock_, read by spinning workers
  int64_t wanted_ = 0;
  std::atomic<bool> stop_{false};
};

// Run `blocks` in chunks of `chunk` on `threads` threads of the pool, the caller among them.
// One caller at a time uses the pool (run_tasks lets go of the GIL, so another Python thread
// may call in meanwhile): a second runs its work alone, on its own thread.
void run_on(int64_t blocks, int64_t threads, int64_t chunk, int64_t* counts, ChunkBody body) {
  static std::mutex busy;
  std::unique_lock<std::mutex> owner(busy, std::defer_lock);
  if (threads > 1 && !owner.try_lock()) threads = 1;
  auto layer = std::make_shared<Layer>();
  layer->body = std::move(body);
  layer->blocks = blocks;
  layer->chunk = threads == 1 ? blocks : chunk;
  if (threads == 1) layer->work();
  else Pool::instance().run(layer, threads);
  layer->body = nullptr;  // what it captured lives on the caller's stack
  counts[0] += layer->negatives.load();
  counts[1] += layer->zeros.load();
}

// A layer of `blocks` pixel blocks on at most `wanted` threads, `min_blocks` blocks each.
void run_chunks(int64_t blocks, int64_t wanted, int64_t* counts, ChunkBody body,
                int64_t min_blocks = MIN_BLOCKS_PER_THREAD) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(wanted, blocks / min_blocks));
  run_on(blocks, threads, std::max<int64_t>(1, blocks / (threads * CHUNKS_PER_THREAD)), counts,
         std::move(body));
}

// This thread's OpenMP thread count for ATen and oneDNN, set after ATen's own lazy setting
// (its first call on a thread sets the count to torch's), so that it holds; the previous.
int set_aten_threads_here(int threads) {
  at::get_num_threads();
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  return previous;
}

#define BCONV_KERNEL(NAME, TARGET, VEC, ZERO, LOAD, BCAST, XOR, AND, ADDPOP, SUB, TWICE, STORE,   \
                     WINDOW)                                                                     \
  /* group g of a block, tap-packed (kinds 0 and 1): T words a pixel, then the exact formula */ \
  template <int KIND>                                                                            \
  __attribute__((target(TARGET))) void NAME##_taps(const Args& a, const Block& b, int64_t g,    \
                                                    int64_t count, int64_t* vals, int64_t Opad) {\
    constexpr int64_t P = PIXELS;                                                                \
    const int64_t T = a.T;                                                                       \
    thread_local std::vector<uint64_t> rows;                                                     \
    if ((int64_t)rows.size() < P * T) rows.resize(P * T);                                        \
    tap_rows(a, b, g, P, rows.data());                                                           \
    const uint64_t* x = rows.data();                                                             \
    for (int64_t ob = 0; ob < a.OB; ++ob) {                                                      \
      int64_t* out = vals + (g * a.OB + ob) * 8;                                                 \
      const int64_t* w = a.taps + (g * a.OB + ob) * T * 8;                                       \
      VEC acc[P];                                                                                \
      _Pragma("GCC unroll 16") for (int64_t p = 0; p < P; ++p) acc[p] = ZERO;                    \
      for (int64_t t = 0; t < T; ++t) {                                                          \
        const VEC wv = LOAD(w + t * 8);                                                          \
        _Pragma("GCC unroll 16") for (int64_t p = 0; p < P; ++p) {                               \
          const VEC xv = BCAST((int64_t)x[p * T + t]);                                           \
          acc[p] = ADDPOP(acc[p], KIND == 1 ? AND(wv, xv) : XOR(wv, xv));                        \
        }                                                                                        \
      }                                                                                          \
      _Pragma("GCC unroll 16") for (int64_t p = 0; p < P; ++p) {                                 \
        if (p >= count) break; /* constant indices keep acc in registers */                      \
        VEC value;                                                                               \
        if (KIND == 0) value = SUB(BCAST(b.valid[p] * a.Cg), TWICE(acc[p]));                     \
        else value = SUB(TWICE(acc[p]), BCAST(b.ones[p * a.G + g]));                             \
        STORE(out + p * Opad, value);                                                            \
      }                                                                                          \
      if (KIND == 0) tap_outside(a, b, g, ob, count, out, Opad);                                 \
    }                                                                                            \
  }                                                                                              \
  template <int KIND>                                                                            \
  __attribute__((target(TARGET))) void NAME##_blocks(const Args& a, int64_t begin, int64_t end, \
                                                      int64_t* counts) {                         \
    constexpr int64_t P = PIXELS;                                                                \
    const int64_t KK = a.K * a.K, Opad = a.G * a.OB * 8, pixels = a.OH * a.OW;                  \
    /* a thread's scratch, kept: freshly allocated per chunk, its pages were faulted in */       \
    /* again each time (glibc trims a thread arena's top), ~0.1 ms a layer at 2 threads */       \
    thread_local std::vector<int64_t> vals;                                                      \
    if ((int64_t)vals.size() < P * Opad) vals.resize(P * Opad);                                  \
    Block b(a, P);                                                                               \
    const int64_t* offsets = b.offsets.data();                                                   \
    for (int64_t block = begin; block < end; ++block) {                                          \
      const int64_t first = block * P, count = std::min<int64_t>(P, a.N * pixels - first);       \
      b.plan(a, first, count, KIND == 1);                                                        \
      for (int64_t g = 0; g < a.G; ++g) {                                                        \
        if (KIND != 2 && a.T) {                                                                  \
          NAME##_taps<KIND>(a, b, g, count, vals.data(), Opad);                                  \
          continue;                                                                              \
        }                                                                                        \
        const int64_t* xs = a.xs + g * a.Wg;                                                     \
        const int64_t* xn = a.xn + g * a.Wg;                                                     \
        for (int64_t ob = 0; ob < a.OB; ++ob) {                                                  \
          int64_t* out = vals.data() + (g * a.OB + ob) * 8; /* pixel p at out + p * Opad */    \
          if (WINDOW<KIND>(a, b, g, ob, count, out, Opad)) continue;                             \
          VEC acc[P], acc2[P];                                                                   \
          _Pragma("GCC unroll 16") for (int64_t p = 0; p < P; ++p) acc[p] = acc2[p] = ZERO;      \
          for (int64_t kk = 0; kk < KK; ++kk) {                                                  \
            if (!b.any[kk]) continue;                                                            \
            const int64_t* pix = offsets + kk * P;                                               \
            const int64_t wat = ((g * a.OB + ob) * KK + kk) * a.Wg * 8;                          \
            for (int64_t j = 0; j < a.Wg; ++j) {                                                 \
              const int64_t* xsj = xs + j; /* xsj[pix[p]]: one addressing mode, no add */       \
              const int64_t* xnj = xn + j;                                                       \
              const VEC w = LOAD(a.ws + wat + j * 8);                                            \
              if (KIND == 2) {                                                                   \
                const VEC wz = LOAD(a.wn + wat + j * 8);                                         \
                _Pragma("GCC unroll 16") for (int64_t p = 0; p < P; ++p) {                         \
                  if (pix[p] < 0) continue;                                                      \
                  const VEC v = AND(wz, BCAST(xnj[pix[p]]));                                     \
                  acc[p] = ADDPOP(acc[p], v);                                                    \
                  acc2[p] = ADDPOP(acc2[p], AND(v, XOR(w, BCAST(xsj[pix[p]]))));                 \
                }                                                                                \
              } else if (b.all[kk]) { /* every pixel inside: no tests */                       \
                _Pragma("GCC unroll 16") for (int64_t p = 0; p < P; ++p) {                         \
                  const VEC x = BCAST(xsj[pix[p]]);                                              \
                  acc[p] = ADDPOP(acc[p], KIND == 1 ? AND(w, x) : XOR(w, x));                    \
                }                                                                                \
              } else {                                                                           \
                _Pragma("GCC unroll 16") for (int64_t p = 0; p < P; ++p) {                         \
                  if (pix[p] < 0) continue;                                                      \
                  const VEC x = BCAST(xsj[pix[p]]);                                              \
                  acc[p] = ADDPOP(acc[p], KIND == 1 ? AND(w, x) : XOR(w, x));                    \
                }                                                                                \
              }                                                                                  \
            }                                                                                    \
          }                                                                                      \
          _Pragma("GCC unroll 16") for (int64_t p = 0; p < P; ++p) {                           \
            if (p >= count) break; /* constant indices keep acc in registers */                  \
            VEC value;                                                                           \
            if (KIND == 0) value = SUB(BCAST(b.valid[p] * a.Cg), TWICE(acc[p]));             \
            else if (KIND == 1) value = SUB(TWICE(acc[p]), BCAST(b.ones[p * a.G + g]));      \
            else value = SUB(acc[p], TWICE(acc2[p]));                                      \
            STORE(out + p * Opad, value);                                                        \
          }                                                                                      \
        }                                                                                        \
      }                                                                                          \
      finish_pixels(a, first, count, vals.data(), counts);                                       \
    }                                                                                            \
  }                                                                                              \
  void NAME(const Args& a, int64_t* counts) {                                                    \
    const int64_t blocks = (a.N * a.OH * a.OW + PIXELS - 1) / PIXELS;                            \
    const int64_t per_pixel = a.T ? a.T : a.K * a.K * a.Wg; /* words a pixel, a group, 8 out */ \
    const int64_t words = PIXELS * a.G * a.OB * 8 * per_pixel; /* a block's popcounts */        \
    run_chunks(blocks, a.threads, counts, [&](int64_t begin, int64_t end, int64_t* local) {      \
      if (a.kind == 0) NAME##_blocks<0>(a, begin, end, local);                                   \
      else if (a.kind == 1) NAME##_blocks<1>(a, begin, end, local);                              \
      else NAME##_blocks<2>(a, begin, end, local);                                               \
    }, std::max<int64_t>(1, (MIN_THREAD_WORDS + words - 1) / words));                            \
  }

// ---- scalar POPCNT: 8 lanes as a plain array
struct V8 { uint64_t v[8]; };
__attribute__((target("popcnt"))) inline V8 s_zero() { V8 r; for (int i = 0; i < 8; ++i) r.v[i] = 0; return r; }
__attribute__((target("popcnt"))) inline V8 s_load(const int64_t* p) { V8 r; for (int i = 0; i < 8; ++i) r.v[i] = (uint64_t)p[i]; return r; }
__attribute__((target("popcnt"))) inline V8 s_bcast(int64_t x) { V8 r; for (int i = 0; i < 8; ++i) r.v[i] = (uint64_t)x; return r; }
__attribute__((target("popcnt"))) inline V8 s_xor(V8 a, V8 b) { for (int i = 0; i < 8; ++i) a.v[i] ^= b.v[i]; return a; }
__attribute__((target("popcnt"))) inline V8 s_and(V8 a, V8 b) { for (int i = 0; i < 8; ++i) a.v[i] &= b.v[i]; return a; }
__attribute__((target("popcnt"))) inline V8 s_addpop(V8 acc, V8 x) { for (int i = 0; i < 8; ++i) acc.v[i] += __builtin_popcountll(x.v[i]); return acc; }
__attribute__((target("popcnt"))) inline V8 s_sub(V8 a, V8 b) { for (int i = 0; i < 8; ++i) a.v[i] -= b.v[i]; return a; }
__attribute__((target("popcnt"))) inline V8 s_twice(V8 a) { for (int i = 0; i < 8; ++i) a.v[i] += a.v[i]; return a; }
__attribute__((target("popcnt"))) inline void s_store(int64_t* out, V8 a) { for (int i = 0; i < 8; ++i) out[i] = (int64_t)a.v[i]; }
BCONV_KERNEL(kernel_popcnt, "popcnt", V8, s_zero(), s_load, s_bcast, s_xor, s_and, s_addpop, s_sub,
             s_twice, s_store, no_window)

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
__attribute__((target(T2))) inline V2 a2_sub(V2 a, V2 b) { return {_mm256_sub_epi64(a.lo, b.lo), _mm256_sub_epi64(a.hi, b.hi)}; }
__attribute__((target(T2))) inline V2 a2_twice(V2 a) { return {_mm256_add_epi64(a.lo, a.lo), _mm256_add_epi64(a.hi, a.hi)}; }
__attribute__((target(T2))) inline void a2_store(int64_t* out, V2 a) { _mm256_storeu_si256((__m256i*)out, a.lo); _mm256_storeu_si256((__m256i*)(out + 4), a.hi); }
BCONV_KERNEL(kernel_avx2, T2, V2, a2_zero(), a2_load, a2_bcast, a2_xor, a2_and, a2_addpop, a2_sub,
             a2_twice, a2_store, no_window)

// ---- AVX-512BW: one 512-bit vector, nibble table. The 64-bit xor/and (not _si512) let the
// compiler fold each input word's broadcast into the xor as an embedded {1to8} operand.
#define TBW "avx512f,avx512bw,popcnt"
// Per-byte bit counts (at most 8 each) by nibble table; vpsadbw sums them per 64-bit lane.
__attribute__((target(TBW))) inline __m512i bw_bytes(__m512i v) {
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4));
  const __m512i low = _mm512_set1_epi8(0x0f);
  const __m512i high = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
  return _mm512_add_epi8(_mm512_shuffle_epi8(table, _mm512_and_si512(v, low)),
                         _mm512_shuffle_epi8(table, high));
}
__attribute__((target(TBW))) inline __m512i bw_pop(__m512i v) {
  return _mm512_sad_epu8(bw_bytes(v), _mm512_setzero_si512());
}
#define BW_ZERO _mm512_setzero_si512()
#define BW_LOAD(p) _mm512_loadu_si512((const void*)(p))
#define BW_BCAST(x) _mm512_set1_epi64(x)
#define BW_ADDPOP(acc, x) _mm512_add_epi64(acc, bw_pop(x))
#define BW_TWICE(a) _mm512_add_epi64(a, a)
#define BW_STORE(out, a) _mm512_storeu_si512((void*)(out), a)

// A full adder on every bit: a + b + c = sum + 2 * carry.
__attribute__((target(TBW))) inline void bw_add3(__m512i a, __m512i b, __m512i c, __m512i* sum,
                                                  __m512i* carry) {
  *sum = _mm512_ternarylogic_epi64(a, b, c, 0x96);    // a ^ b ^ c
  *carry = _mm512_ternarylogic_epi64(a, b, c, 0xe8);  // majority
}

// The bit counts of nine words, per byte: a carry-save adder tree (Harley-Seal) reduces them
// to ones + 2 twos + 4 fours + 8 eights, so four nibble-table popcounts count nine words.
// At most 8 * 15 = 120 per byte.
__attribute__((target(TBW), always_inline)) inline __m512i bw_bytes9(const __m512i* v) {
  __m512i s1, c1, s2, c2, s3, c3, ones, twos_a, twos_b, fours_a;
  bw_add3(v[0], v[1], v[2], &s1, &c1);
  bw_add3(v[3], v[4], v[5], &s2, &c2);
  bw_add3(v[6], v[7], v[8], &s3, &c3);
  bw_add3(s1, s2, s3, &ones, &twos_a);
  bw_add3(c1, c2, c3, &twos_b, &fours_a);
  const __m512i twos = _mm512_xor_si512(twos_a, twos_b);
  const __m512i fours_b = _mm512_and_si512(twos_a, twos_b);
  const __m512i fours = _mm512_xor_si512(fours_a, fours_b);
  const __m512i eights = _mm512_and_si512(fours_a, fours_b);
  __m512i h = bw_bytes(eights);
  h = _mm512_add_epi8(_mm512_add_epi8(h, h), bw_bytes(fours));
  h = _mm512_add_epi8(_mm512_add_epi8(h, h), bw_bytes(twos));
  return _mm512_add_epi8(_mm512_add_epi8(h, h), bw_bytes(ones));
}

// AVX-512BW, 3x3 windows, one pixel at a time: for an interior pixel the nine words at each
// word position go through bw_bytes9 (two positions share one vpsadbw: 240 < 256), about
// half the instructions of nine nibble-table popcounts. Border pixels count word by word.
// WG: words per pixel when known at compile time (1, 2: the weights then stay in registers,
// as the stores to `out` would otherwise force their reload), else 0.
template <int KIND, int WG>
__attribute__((target(TBW))) void bw_window_pixels(const Args& a, const Block& b, int64_t g,
                                                   int64_t ob, int64_t count, int64_t* out,
                                                   int64_t stride) {
  const int64_t Wg = WG ? WG : a.Wg, P = PIXELS;
  const int64_t* xs = a.xs + g * Wg;
  const int64_t* wat = a.ws + (g * a.OB + ob) * 9 * Wg * 8;  // [9][Wg][8]
  __m512i kept[WG ? 9 * WG : 1];
  if (WG) {
    _Pragma("GCC unroll 18") for (int i = 0; i < 9 * WG; ++i) kept[i] = BW_LOAD(wat + i * 8);
  }
  for (int64_t p = 0; p < count; ++p) {
    const int64_t* pix = b.offsets.data() + p;  // input word of kernel position k: pix[k * P]
    __m512i total = BW_ZERO;
    if (b.valid[p] == 9) {
      __m512i h = BW_ZERO;
      _Pragma("GCC unroll 2") for (int64_t j = 0; j < Wg; ++j) {
        __m512i v[9];
        _Pragma("GCC unroll 9") for (int k = 0; k < 9; ++k) {
          const __m512i w = WG ? kept[WG ? k * Wg + j : 0] : BW_LOAD(wat + (k * Wg + j) * 8);
          const __m512i x = BW_BCAST(xs[pix[k * P] + j]);
          v[k] = KIND == 1 ? _mm512_and_epi64(w, x) : _mm512_xor_epi64(w, x);
        }
        h = _mm512_add_epi8(h, bw_bytes9(v));
        if (j % 2 == 1 || j == Wg - 1) {
          total = _mm512_add_epi64(total, _mm512_sad_epu8(h, BW_ZERO));
          h = BW_ZERO;
        }
      }
    } else {
      for (int k = 0; k < 9; ++k) {
        if (pix[k * P] < 0) continue;
        for (int64_t j = 0; j < Wg; ++j) {
          const __m512i w = WG ? kept[WG ? k * Wg + j : 0] : BW_LOAD(wat + (k * Wg + j) * 8);
          const __m512i x = BW_BCAST(xs[pix[k * P] + j]);
          total = BW_ADDPOP(total, KIND == 1 ? _mm512_and_epi64(w, x)
                                             : _mm512_xor_epi64(w, x));
        }
      }
    }
    const __m512i value =
        KIND == 0 ? _mm512_sub_epi64(_mm512_set1_epi64(b.valid[p] * a.Cg), BW_TWICE(total))
                  : _mm512_sub_epi64(BW_TWICE(total), _mm512_set1_epi64(b.ones[p * a.G + g]));
    BW_STORE(out + p * stride, value);
  }
}

template <int KIND>
bool bw_window(const Args& a, const Block& b, int64_t g, int64_t ob, int64_t count,
               int64_t* out, int64_t stride) {
  if (KIND == 2 || a.K != 3) return false;
  if (a.Wg == 1) bw_window_pixels<KIND, 1>(a, b, g, ob, count, out, stride);
  else if (a.Wg == 2) bw_window_pixels<KIND, 2>(a, b, g, ob, count, out, stride);
  else bw_window_pixels<KIND, 0>(a, b, g, ob, count, out, stride);
  return true;
}

BCONV_KERNEL(kernel_avx512bw, TBW, __m512i, BW_ZERO, BW_LOAD, BW_BCAST, _mm512_xor_epi64,
             _mm512_and_epi64, BW_ADDPOP, _mm512_sub_epi64, BW_TWICE, BW_STORE, bw_window)

// ---- AVX-512 VPOPCNTDQ: vpopcntq per 64-bit lane
#define TVP "avx512f,avx512vpopcntdq,popcnt"
#define VP_ADDPOP(acc, x) _mm512_add_epi64(acc, _mm512_popcnt_epi64(x))
BCONV_KERNEL(kernel_vpopcntdq, TVP, __m512i, BW_ZERO, BW_LOAD, BW_BCAST, _mm512_xor_epi64,
             _mm512_and_epi64, VP_ADDPOP, _mm512_sub_epi64, BW_TWICE, BW_STORE, no_window)

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

// The instruction set a path packs bits and runs its output step with: AVX-512 (F/DQ/BW/VL)
// on the AVX-512 paths where the CPU has them all, AVX2 on the others but scalar POPCNT's.
int64_t simd_of(int64_t path) {
  __builtin_cpu_init();
  if (path >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return 2;
  return path >= 1 && __builtin_cpu_supports("avx2") ? 1 : 0;
}

}  // namespace

// How many threads a layer of `blocks` pixel blocks runs on (the pool's workers and the
// caller): each chunk records its thread and holds it until every thread has been seen or a
// short wait passes, so that one thread cannot take every chunk before the others wake.
int64_t parallel_threads(int64_t blocks) {
  std::mutex lock;
  std::vector<std::thread::id> seen;
  const int64_t expected = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), blocks / MIN_BLOCKS_PER_THREAD));
  int64_t counts[2] = {0, 0};
  run_chunks(blocks, at::get_num_threads(), counts, [&](int64_t, int64_t, int64_t*) {
    {
      std::lock_guard<std::mutex> guard(lock);
      const auto id = std::this_thread::get_id();
      if (std::find(seen.begin(), seen.end(), id) == seen.end()) seen.push_back(id);
    }
    for (int i = 0; i < 200; ++i) {
      {
        std::lock_guard<std::mutex> guard(lock);
        if ((int64_t)seen.size() >= expected) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  return (int64_t)seen.size();
}

std::vector<std::string> supported_paths() {
  std::vector<std::string> names;
  for (int64_t p = 0; p < 4; ++p) if (path_supported(p)) names.push_back(PATHS[p]);
  return names;
}

// Pack a float NCHW tensor into NHWC sign / nonzero planes with `groups` channel groups, in
// blocks of PACK_PIXELS pixels on at most `threads` threads of the pool (0: torch's count),
// with the instruction set of `path`.
constexpr int64_t PACK_PIXELS = 64;
std::vector<torch::Tensor> pack_nhwc(torch::Tensor x, int64_t groups, int64_t threads,
                                     int64_t path) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat, "pack_nhwc: float [N, C, H, W]");
  TORCH_CHECK(path >= 0 && path < 4 && path_supported(path), "pack_nhwc: path not supported here");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Cg = C / groups, Wg = (Cg + 63) / 64;
  auto pixel_major = x.permute({0, 2, 3, 1}).contiguous();  // free for channels_last input
  auto s = torch::empty({N, H, W, groups, Wg}, torch::kLong);
  auto z = torch::empty({N, H, W, groups, Wg}, torch::kLong);
  auto counts = torch::zeros({2}, torch::kLong);
  const int64_t simd = simd_of(path);
  const float* y = pixel_major.data_ptr<float>();
  int64_t* ps = s.data_ptr<int64_t>();
  int64_t* pn = z.data_ptr<int64_t>();
  const int64_t pixels = N * H * W, words = groups * Wg;
  run_chunks((pixels + PACK_PIXELS - 1) / PACK_PIXELS,
             threads > 0 ? threads : at::get_num_threads(), counts.data_ptr<int64_t>(),
             [&](int64_t begin, int64_t end, int64_t* local) {
               const int64_t first = begin * PACK_PIXELS;
               const int64_t count = std::min(end * PACK_PIXELS, pixels) - first;
               pack_pixels(y + first * C, count, C, Cg, Wg, ps + first * words,
                           pn + first * words, local, simd);
             });
  return {s, z, counts};
}

// The binary conv. Empty tensors stand for "absent" (residual, slopes, next planes, epilogue).
std::vector<torch::Tensor> bconv(torch::Tensor xs, torch::Tensor xn, torch::Tensor ws,
                                 torch::Tensor wn, int64_t out_channels, int64_t cin_per_group,
                                 int64_t kernel, int64_t stride, int64_t pad, int64_t kind,
                                 int64_t path, torch::Tensor scale, torch::Tensor bias,
                                 torch::Tensor residual, int64_t act, torch::Tensor neg,
                                 torch::Tensor pos, int64_t next_groups, torch::Tensor taps,
                                 torch::Tensor tap_ones, int64_t threads) {
  TORCH_CHECK(path >= 0 && path < 4 && path_supported(path), "bconv: path not supported here");
  Args a{};
  a.threads = threads > 0 ? threads : at::get_num_threads();
  a.xs = xs.data_ptr<int64_t>(); a.xn = xn.data_ptr<int64_t>();
  a.ws = ws.data_ptr<int64_t>(); a.wn = wn.data_ptr<int64_t>();
  a.N = xs.size(0); a.H = xs.size(1); a.W = xs.size(2); a.G = xs.size(3); a.Wg = xs.size(4);
  a.Cg = cin_per_group; a.O = out_channels; a.Og = out_channels / a.G; a.OB = ws.size(1);
  a.K = kernel; a.stride = stride; a.pad = pad; a.kind = kind;
  a.simd = simd_of(path);
  if (taps.numel()) {
    TORCH_CHECK(taps.dim() == 4 && taps.size(0) == a.G && taps.size(1) == a.OB &&
                    taps.size(2) == (kernel * kernel * cin_per_group + 63) / 64 &&
                    tap_ones.sizes() == torch::IntArrayRef({a.G, a.OB, kernel * kernel, 8}),
                "bconv: taps must be [G, OB, ceil(K*K*Cg/64), 8], tap_ones [G, OB, K*K, 8]");
    a.taps = taps.data_ptr<int64_t>(); a.tap_ones = tap_ones.data_ptr<int64_t>();
    a.T = taps.size(2);
  }
  a.OH = (a.H + 2 * pad - kernel) / stride + 1; a.OW = (a.W + 2 * pad - kernel) / stride + 1;
  torch::Tensor out, raw, ns, nn_;
  if (scale.numel() == 0) {
    raw = torch::empty({a.N, a.OH, a.OW, a.O}, torch::kInt);
    a.raw = raw.data_ptr<int32_t>();
  } else {
    a.scale = scale.data_ptr<float>(); a.bias = bias.data_ptr<float>();
    if (residual.numel()) {
      TORCH_CHECK(residual.sizes() == torch::IntArrayRef({a.N, a.O, a.OH, a.OW}),
                  "bconv: residual must be [N, O, OH, OW]");
      residual = residual.permute({0, 2, 3, 1}).contiguous();  // free for channels_last
      a.residual = residual.data_ptr<float>();
    }
    a.act = act;
    a.neg = neg.numel() ? neg.data_ptr<float>() : nullptr;
    a.pos = pos.numel() ? pos.data_ptr<float>() : nullptr;
    out = torch::empty({a.N, a.OH, a.OW, a.O}, torch::kFloat);
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
  if (a.raw) return {raw.permute({0, 3, 1, 2})};
  if (a.next_s) return {out.permute({0, 3, 1, 2}), ns, nn_, counts};
  return {out.permute({0, 3, 1, 2})};
}

// Run task(0) ... task(count - 1), Python callables, on at most `threads` threads of the
// kernels' pool (the caller among them), each task taking the next index as a thread comes
// free, with ATen and oneDNN single-threaded inside each (their OpenMP count set to 1 on the
// thread that runs it): the real-valued layers split into bands on the same threads as the
// binary convs, and no OpenMP team woken beside them. The GIL is let go while waiting and
// taken by each task. A task's exception is the callable's to keep; here it only fails the
// call.
void run_tasks(py::function task, int64_t count, int64_t threads) {
  std::atomic<bool> failed{false};
  {
    py::gil_scoped_release release;
    const int saved = set_aten_threads_here(1);
    int64_t counts[2] = {0, 0};
    run_on(count, std::max<int64_t>(1, std::min(threads, count)), 1, counts,
           [&](int64_t begin, int64_t end, int64_t*) {
             thread_local const int single = set_aten_threads_here(1);  // a worker, once
             (void)single;
             py::gil_scoped_acquire gil;
             for (int64_t i = begin; i < end; ++i) {
               try {
                 task(i);
               } catch (...) {
                 failed = true;
               }
             }
           });
    omp_set_num_threads(saved);
  }
  TORCH_CHECK(!failed.load(), "run_tasks: a task raised");
}

// The calling thread's OpenMP thread count for ATen (torch.set_num_threads also sets it, with
// the count every new thread starts from); the previous one.
int64_t set_aten_threads(int64_t threads) {
  TORCH_CHECK(threads > 0, "set_aten_threads: threads must be positive");
  return set_aten_threads_here((int)threads);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("supported_paths", &supported_paths, "instruction-set paths this CPU runs");
  m.def("parallel_threads", &parallel_threads, "threads a layer of that many blocks runs on",
        py::arg("blocks") = 1024);
  m.def("pack_nhwc", &pack_nhwc, "float NCHW -> NHWC sign and nonzero bit planes",
        py::arg("x"), py::arg("groups"), py::arg("threads"), py::arg("path"));
  m.def("bconv", &bconv, "binary convolution on bit planes, optional fused output",
        py::arg("xs"), py::arg("xn"), py::arg("ws"), py::arg("wn"), py::arg("out_channels"),
        py::arg("cin_per_group"), py::arg("kernel"), py::arg("stride"), py::arg("pad"),
        py::arg("kind"), py::arg("path"), py::arg("scale"), py::arg("bias"),
        py::arg("residual"), py::arg("act"), py::arg("neg"), py::arg("pos"),
        py::arg("next_groups"), py::arg("taps"), py::arg("tap_ones"), py::arg("threads") = 0);
  m.def("run_tasks", &run_tasks, "task(i) for i < count on the kernels' pool, ATen 1-threaded",
        py::arg("task"), py::arg("count"), py::arg("threads"));
  m.def("set_aten_threads", &set_aten_threads, "this thread's OpenMP count; the previous one");
}
