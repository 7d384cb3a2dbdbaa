/*
 * float16 (IEEE 754 binary16) and bfloat16 kernels: widen to float32, combine, round back to
 * nearest even.
 *
 * One rounding is enough for exact results. The sum or product of two binary16 values rounded
 * to float32 (24 bits >= 2 * 11 + 2) and then to binary16 equals the sum or product rounded
 * once; the same holds for bfloat16 (8 bits). min and max are exact anyway.
 *
 * The portable conversions use integer arithmetic only, so they do not depend on the
 * floating-point rounding mode. The x86 kernels use F16C's vcvtph2ps/vcvtps2ph (round to
 * nearest even, NaN quieted, subnormals kept) for float16, and AVX2 integer arithmetic for
 * bfloat16; they handle a tail shorter than a vector by running the vector code on a copy, so
 * every element goes through the same instructions.
 */
#include "reduce/kernels.h"

#ifdef CGLOO_REDUCE_X86
#include <immintrin.h>
#endif

static inline uint32_t half_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float half_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float half_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) /* infinity, or NaN made quiet */
        return half_bits_f32(sign | 0x7f800000 | (mant << 13) | (mant ? 0x400000 : 0));
    if (exp == 0) /* zero or subnormal: mant * 2^-24, exact in float32 */
        return half_bits_f32(sign | half_f32_bits((float)mant * 0x1p-24f));
    return half_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

static inline uint16_t f32_to_half(float f)
{
    uint32_t u = half_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    u &= 0x7fffffff;
    if (u > 0x7f800000) /* NaN: keep the top of the payload, set the quiet bit */
        return sign | 0x7e00 | ((u >> 13) & 0x3ff);
    if (u >= 0x477ff000) /* 65520 and up (and infinity) round to infinity */
        return sign | 0x7c00;
    if (u >= 0x38800000) { /* normal in binary16: rebias the exponent by -112, round */
        uint32_t r = u - (112u << 23) + 0xfff + ((u >> 13) & 1);
        return sign | (uint16_t)(r >> 13);
    }
    /* Subnormal in binary16 (or zero): count units of 2^-24. The value is m * 2^(e - 150), so
     * the unit count is m >> (126 - e), rounded to nearest even; below 2^-25 it is 0. A count of
     * 0x400 is the smallest normal, which is its correct encoding too. */
    uint32_t e = u >> 23, shift = 126 - e;
    if (shift > 24)
        return sign;
    uint32_t m = (u & 0x7fffff) | 0x800000;
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    q += rem > halfway || (rem == halfway && (q & 1));
    return sign | (uint16_t)q;
}

static inline float bf16_to_f32(uint16_t b)
{
    return half_bits_f32((uint32_t)b << 16);
}

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t u = half_f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) /* NaN: truncate, set the quiet bit */
        return (uint16_t)((u >> 16) | 0x40);
    /* Round to nearest even; a carry into the exponent is right, up to infinity. */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

float cgloo__half_to_float(uint16_t h)
{
    return half_to_f32(h);
}

uint16_t cgloo__float_to_half(float f)
{
    return f32_to_half(f);
}

float cgloo__bf16_to_float(uint16_t b)
{
    return bf16_to_f32(b);
}

uint16_t cgloo__float_to_bf16(float f)
{
    return f32_to_bf16(f);
}

static inline float half_sum(float x, float y)
{
    return x + y;
}

static inline float half_product(float x, float y)
{
    return x * y;
}

static inline float half_min(float x, float y)
{
    return cgloo__float32_min(x, y);
}

static inline float half_max(float x, float y)
{
    return cgloo__float32_max(x, y);
}

#define HALF_KERNEL(op, name, to_f32, from_f32)                                                    \
    void cgloo__reduce_##op##_##name(void *restrict inout, const void *restrict in, size_t n)      \
    {                                                                                              \
        uint16_t *restrict a = inout;                                                              \
        const uint16_t *restrict b = in;                                                           \
        for (size_t i = 0; i < n; i++)                                                             \
            a[i] = from_f32(half_##op(to_f32(a[i]), to_f32(b[i])));                                \
    }
#define HALF_KERNELS(op)                                                                           \
    HALF_KERNEL(op, float16, half_to_f32, f32_to_half)                                             \
    HALF_KERNEL(op, bfloat16, bf16_to_f32, f32_to_bf16)
HALF_KERNELS(sum)
HALF_KERNELS(product)
HALF_KERNELS(min)
HALF_KERNELS(max)

#ifdef CGLOO_REDUCE_X86
#define HALF_AVX2 __attribute__((target("avx2,f16c")))

static inline HALF_AVX2 __m256 half_avx2_sum(__m256 x, __m256 y)
{
    return _mm256_add_ps(x, y);
}

static inline HALF_AVX2 __m256 half_avx2_product(__m256 x, __m256 y)
{
    return _mm256_mul_ps(x, y);
}

/* As cgloo__float32_min: _mm256_min_ps(p, q) is p < q ? p : q. */
static inline HALF_AVX2 __m256 half_avx2_min(__m256 x, __m256 y)
{
    return _mm256_or_ps(_mm256_min_ps(y, x), _mm256_min_ps(x, y));
}

static inline HALF_AVX2 __m256 half_avx2_max(__m256 x, __m256 y)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    return _mm256_xor_ps(half_avx2_min(_mm256_xor_ps(x, sign), _mm256_xor_ps(y, sign)), sign);
}

static inline HALF_AVX2 __m256 f16_avx2_load(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline HALF_AVX2 void f16_avx2_store(uint16_t *p, __m256 v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

static inline HALF_AVX2 __m256 bf16_avx2_load(const uint16_t *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* As f32_to_bf16, eight at a time; packus keeps 0..0xffff as is and works per 128-bit lane,
 * so the permute puts the two halves together. */
static inline HALF_AVX2 void bf16_avx2_store(uint16_t *p, __m256 v)
{
    __m256i u = _mm256_castps_si256(v);
    __m256i hi = _mm256_srli_epi32(u, 16);
    __m256i bias =
        _mm256_add_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(1)), _mm256_set1_epi32(0x7fff));
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
    __m256i quiet = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
    r = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xd8);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(r));
}

#define HALF_AVX2_KERNEL(op, name, fmt)                                                            \
    static HALF_AVX2 void op##_##name##_avx2(void *restrict inout, const void *restrict in,        \
                                             size_t n)                                             \
    {                                                                                              \
        uint16_t *restrict a = inout;                                                              \
        const uint16_t *restrict b = in;                                                           \
        size_t i = 0;                                                                              \
        for (; i + 8 <= n; i += 8)                                                                 \
            fmt##_avx2_store(a + i,                                                                \
                             half_avx2_##op(fmt##_avx2_load(a + i), fmt##_avx2_load(b + i)));      \
        if (i < n) {                                                                               \
            uint16_t ta[8] = {0}, tb[8] = {0};                                                     \
            memcpy(ta, a + i, (n - i) * sizeof *a);                                                \
            memcpy(tb, b + i, (n - i) * sizeof *b);                                                \
            fmt##_avx2_store(ta, half_avx2_##op(fmt##_avx2_load(ta), fmt##_avx2_load(tb)));        \
            memcpy(a + i, ta, (n - i) * sizeof *a);                                                \
        }                                                                                          \
    }
#define HALF_AVX2_KERNELS(op)                                                                      \
    HALF_AVX2_KERNEL(op, float16, f16)                                                             \
    HALF_AVX2_KERNEL(op, bfloat16, bf16)
HALF_AVX2_KERNELS(sum)
HALF_AVX2_KERNELS(product)
HALF_AVX2_KERNELS(min)
HALF_AVX2_KERNELS(max)

void cgloo__reduce_fill_half_avx2(cgloo__reduce_table t)
{
#define HALF_AVX2_FILL(OP, op)                                                                     \
    t[CGLOO_##OP][CGLOO_FLOAT16] = op##_float16_avx2;                                              \
    t[CGLOO_##OP][CGLOO_BFLOAT16] = op##_bfloat16_avx2;
    HALF_AVX2_FILL(SUM, sum)
    HALF_AVX2_FILL(PRODUCT, product)
    HALF_AVX2_FILL(MIN, min)
    HALF_AVX2_FILL(MAX, max)
#undef HALF_AVX2_FILL
}
#endif
