// This CPU's popcount ceiling: the binary multiply-adds per second of a tight
// XOR + POPCNT + ADD loop over L1-resident data, one loop per instruction-set path of
// bconv.cpp, each shaped as that path's inner loop is (a weight vector of 8 output channels
// loaded once, then for each of P pixels: broadcast an input word, xor, popcount, add into
// that pixel's accumulator). What bconv.cpp adds on top (gathering the pixels' words through
// their offsets, planning blocks, borders, the output step) is what keeps a layer below this.
// One 64-bit word of xor + popcount is 64 binary multiply-adds.
//
// Data: WORDS weight vectors (4 KiB) and WORDS * P input words (8 KiB): both stay in L1.
// Paths by number as in bconv.cpp: 0 scalar POPCNT, 1 AVX2 (nibble table + vpsadbw),
// 2 AVX-512BW (nibble table + vpsadbw), 3 AVX-512 VPOPCNTDQ.
//
// And its fp32 ceiling, what the real-valued layers (stem, 1x1 shortcuts, FC) can reach: fp32
// fused multiply-adds per second of a register-resident loop, FMA_ACC independent vector
// accumulators (acc = acc * a + b), enough to cover the FMA latency on every FMA unit (4-5
// cycles x 2 units: 10 in flight; 12 of the 16 ymm registers, 24 of the 32 zmm). No memory
// is touched inside the loop. Paths by number: 0 AVX2 + FMA (8 lanes), 1 AVX-512F (16 lanes).
// One lane of one FMA is one multiply-add.

#include <torch/extension.h>
#include <immintrin.h>
#include <chrono>
#include <cstdint>
#include <tuple>
#include <vector>

namespace {

constexpr int64_t WORDS = 64;  // weight vectors of 8 lanes per pass
constexpr int P = 16;          // pixels (accumulators) per weight vector, as bconv's PIXELS

struct Data {
  std::vector<int64_t> w, x;
  Data() : w(WORDS * 8), x(WORDS * P) {
    uint64_t s = 0x9e3779b97f4a7c15ull;  // any bits: popcount's time does not depend on them
    for (auto& v : w) v = (int64_t)(s = s * 6364136223846793005ull + 1442695040888963407ull);
    for (auto& v : x) v = (int64_t)(s = s * 6364136223846793005ull + 1442695040888963407ull);
  }
};

// The compiler may not assume a pass reads what the previous one did, so no pass is skipped.
template <typename T> inline void opaque(T*& p) { asm volatile("" : "+r"(p)); }

__attribute__((target("popcnt")))
uint64_t loop_popcnt(const Data& d, int64_t passes) {
  constexpr int Q = 4;  // accumulators: the general registers hold 4 with their operands
  uint64_t acc[Q] = {0, 0, 0, 0};
  for (int64_t r = 0; r < passes; ++r) {
    const int64_t* w = d.w.data();
    const int64_t* x = d.x.data();
    opaque(w);
    opaque(x);
    for (int64_t j = 0; j < WORDS; ++j) {
      for (int lane = 0; lane < 8; ++lane) {
        const uint64_t wj = (uint64_t)w[j * 8 + lane];
#pragma GCC unroll 4
        for (int p = 0; p < Q; ++p) acc[p] += __builtin_popcountll(wj ^ (uint64_t)x[j * P + p]);
      }
    }
  }
  return acc[0] + acc[1] + acc[2] + acc[3];
}

__attribute__((target("avx2,popcnt"))) inline __m256i a2_pop(__m256i v) {
  const __m256i table = _mm256_setr_epi8(0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4,0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i counts = _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(v, low)),
      _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
  return _mm256_sad_epu8(counts, _mm256_setzero_si256());
}

__attribute__((target("avx2,popcnt")))
uint64_t loop_avx2(const Data& d, int64_t passes) {
  constexpr int Q = 4;  // 16 ymm registers: 4 pixels x 2 halves of accumulators, and operands
  __m256i lo[Q], hi[Q];
  for (int p = 0; p < Q; ++p) lo[p] = hi[p] = _mm256_setzero_si256();
  for (int64_t r = 0; r < passes; ++r) {
    const int64_t* w = d.w.data();
    const int64_t* x = d.x.data();
    opaque(w);
    opaque(x);
    for (int64_t j = 0; j < WORDS; ++j) {
      const __m256i wl = _mm256_loadu_si256((const __m256i*)(w + j * 8));
      const __m256i wh = _mm256_loadu_si256((const __m256i*)(w + j * 8 + 4));
#pragma GCC unroll 4
      for (int p = 0; p < Q; ++p) {
        const __m256i b = _mm256_set1_epi64x(x[j * P + p]);
        lo[p] = _mm256_add_epi64(lo[p], a2_pop(_mm256_xor_si256(wl, b)));
        hi[p] = _mm256_add_epi64(hi[p], a2_pop(_mm256_xor_si256(wh, b)));
      }
    }
  }
  alignas(32) uint64_t out[4];
  __m256i sum = _mm256_setzero_si256();
  for (int p = 0; p < Q; ++p) sum = _mm256_add_epi64(sum, _mm256_add_epi64(lo[p], hi[p]));
  _mm256_store_si256((__m256i*)out, sum);
  return out[0] + out[1] + out[2] + out[3];
}

__attribute__((target("avx512f,avx512bw,popcnt"))) inline __m512i bw_pop(__m512i v) {
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4));
  const __m512i low = _mm512_set1_epi8(0x0f);
  const __m512i counts = _mm512_add_epi8(_mm512_shuffle_epi8(table, _mm512_and_si512(v, low)),
      _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), low)));
  return _mm512_sad_epu8(counts, _mm512_setzero_si512());
}

__attribute__((target("avx512f,avx512bw,popcnt")))
uint64_t loop_avx512bw(const Data& d, int64_t passes) {
  __m512i acc[P];
  for (int p = 0; p < P; ++p) acc[p] = _mm512_setzero_si512();
  for (int64_t r = 0; r < passes; ++r) {
    const int64_t* w = d.w.data();
    const int64_t* x = d.x.data();
    opaque(w);
    opaque(x);
    for (int64_t j = 0; j < WORDS; ++j) {
      const __m512i wv = _mm512_loadu_si512((const void*)(w + j * 8));
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p)
        acc[p] = _mm512_add_epi64(acc[p], bw_pop(_mm512_xor_epi64(wv, _mm512_set1_epi64(x[j * P + p]))));
    }
  }
  __m512i sum = _mm512_setzero_si512();
  for (int p = 0; p < P; ++p) sum = _mm512_add_epi64(sum, acc[p]);
  return (uint64_t)_mm512_reduce_add_epi64(sum);
}

__attribute__((target("avx512f,avx512vpopcntdq,popcnt")))
uint64_t loop_vpopcntdq(const Data& d, int64_t passes) {
  __m512i acc[P];
  for (int p = 0; p < P; ++p) acc[p] = _mm512_setzero_si512();
  for (int64_t r = 0; r < passes; ++r) {
    const int64_t* w = d.w.data();
    const int64_t* x = d.x.data();
    opaque(w);
    opaque(x);
    for (int64_t j = 0; j < WORDS; ++j) {
      const __m512i wv = _mm512_loadu_si512((const void*)(w + j * 8));
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p)
        acc[p] = _mm512_add_epi64(acc[p], _mm512_popcnt_epi64(
            _mm512_xor_epi64(wv, _mm512_set1_epi64(x[j * P + p]))));
    }
  }
  __m512i sum = _mm512_setzero_si512();
  for (int p = 0; p < P; ++p) sum = _mm512_add_epi64(sum, acc[p]);
  return (uint64_t)_mm512_reduce_add_epi64(sum);
}

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

// Binary multiply-adds of one pass: every weight bit meets the input words of its pixels.
int64_t macs_per_pass(int64_t path) {
  return WORDS * 8 * (path <= 1 ? 4 : P) * 64;  // 4 pixels where 16 registers hold them
}

volatile uint64_t sink;  // the loops' sums, so that no loop is dropped as unused

constexpr int FMA_ACC_AVX2 = 12;    // ymm accumulators (a and b take 2 more of the 16)
constexpr int FMA_ACC_AVX512 = 24;  // zmm accumulators (of 32)
constexpr int FMA_STEPS = 16;       // FMAs per accumulator per pass

// Accumulator i starts at 2 + i; a < 1 and b > 0 pull it towards b / (1 - a) = 1: no
// overflow, no denormals, and every step moves it (a count of steps is visible in its value).
constexpr float FMA_A = 0.999f, FMA_B = 0.001f;

// Each loop leaves its accumulators in `out` (accumulators x lanes).
__attribute__((target("avx2,fma")))
void fma_avx2(int64_t passes, float* out) {
  __m256 acc[FMA_ACC_AVX2];
  for (int i = 0; i < FMA_ACC_AVX2; ++i) acc[i] = _mm256_set1_ps(2.0f + i);
  __m256 a = _mm256_set1_ps(FMA_A), b = _mm256_set1_ps(FMA_B);
  for (int64_t r = 0; r < passes; ++r) {
    asm volatile("" : "+x"(a), "+x"(b));  // not loop-invariant: no pass is folded away
#pragma GCC unroll 16
    for (int s = 0; s < FMA_STEPS; ++s) {
#pragma GCC unroll 12
      for (int i = 0; i < FMA_ACC_AVX2; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
  }
  for (int i = 0; i < FMA_ACC_AVX2; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

__attribute__((target("avx512f")))
void fma_avx512(int64_t passes, float* out) {
  __m512 acc[FMA_ACC_AVX512];
  for (int i = 0; i < FMA_ACC_AVX512; ++i) acc[i] = _mm512_set1_ps(2.0f + i);
  __m512 a = _mm512_set1_ps(FMA_A), b = _mm512_set1_ps(FMA_B);
  for (int64_t r = 0; r < passes; ++r) {
    asm volatile("" : "+v"(a), "+v"(b));
#pragma GCC unroll 16
    for (int s = 0; s < FMA_STEPS; ++s) {
#pragma GCC unroll 24
      for (int i = 0; i < FMA_ACC_AVX512; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
  }
  for (int i = 0; i < FMA_ACC_AVX512; ++i) _mm512_storeu_ps(out + 16 * i, acc[i]);
}

bool fma_path_supported(int64_t path) {
  __builtin_cpu_init();
  switch (path) {
    case 0: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case 1: return __builtin_cpu_supports("avx512f");
  }
  return false;
}

// (accumulators, FMAs per accumulator per pass, lanes) of FMA path `path`'s loop.
std::tuple<int64_t, int64_t, int64_t> fma_loop_shape(int64_t path) {
  return path == 0 ? std::make_tuple<int64_t, int64_t, int64_t>(FMA_ACC_AVX2, FMA_STEPS, 8)
                   : std::make_tuple<int64_t, int64_t, int64_t>(FMA_ACC_AVX512, FMA_STEPS, 16);
}

// Runs the loop; its accumulators land in `out` (a tensor [accumulators, lanes]).
void fma_run(int64_t path, int64_t passes, float* out) {
  if (path == 0) fma_avx2(passes, out);
  else fma_avx512(passes, out);
}


}  // namespace

// (binary multiply-adds, seconds) of `passes` passes of path `path`'s loop on this thread.
std::tuple<int64_t, double> ceiling(int64_t path, int64_t passes) {
  TORCH_CHECK(path >= 0 && path < 4 && path_supported(path), "ceiling: path not supported here");
  TORCH_CHECK(passes > 0, "ceiling: passes must be positive");
  static const Data data;
  const auto start = std::chrono::steady_clock::now();
  uint64_t sum = 0;
  switch (path) {
    case 0: sum = loop_popcnt(data, passes); break;
    case 1: sum = loop_avx2(data, passes); break;
    case 2: sum = loop_avx512bw(data, passes); break;
    case 3: sum = loop_vpopcntdq(data, passes); break;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  sink = sum;
  return {macs_per_pass(path) * passes, seconds};
}

// (fp32 multiply-adds, seconds, accumulators [accumulators, lanes]) of `passes` passes of FMA
// path `path`'s loop on this thread: multiply-adds = passes x accumulators x steps x lanes.
std::tuple<int64_t, double, torch::Tensor> fma_ceiling(int64_t path, int64_t passes) {
  TORCH_CHECK(path >= 0 && path < 2 && fma_path_supported(path), "fma_ceiling: path not supported here");
  TORCH_CHECK(passes > 0, "fma_ceiling: passes must be positive");
  const auto [accumulators, steps, lanes] = fma_loop_shape(path);
  auto out = torch::empty({accumulators, lanes}, torch::kFloat32);
  const auto start = std::chrono::steady_clock::now();
  fma_run(path, passes, out.data_ptr<float>());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {passes * accumulators * steps * lanes, seconds, out};
}

// The FMA paths this CPU has, by number.
std::vector<int64_t> fma_paths() {
  std::vector<int64_t> found;
  for (int64_t path = 0; path < 2; ++path)
    if (fma_path_supported(path)) found.push_back(path);
  return found;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ceiling", &ceiling, "(binary MACs, seconds) of a tight xor+popcount+add loop");
  m.def("fma_ceiling", &fma_ceiling, "(fp32 MACs, seconds) of a register-resident FMA loop");
  m.def("fma_paths", &fma_paths, "the FMA loops this CPU can run, by number");
  m.def("fma_loop_shape", &fma_loop_shape, "(accumulators, FMAs per accumulator per pass, lanes)");
}
