/*
 * float16 (IEEE 754 binary16) and bfloat16 kernels: widen to float32, combine, round back to
 * nearest even.
 *
 * One rounding is enough for exact results. The sum or product of two binary16 values rounded
 * to float32 (24 bits >= 2 * 11 + 2) and then to binary16 equals the sum or product rounded
 * once; the same holds for bfloat16 (8 bits). min and max are exact anyway.
 *
 * The portable conversions use integer arithmetic only, so they do not depend on the
 * floating-point rounding mode. The compiler vectorises the bfloat16 kernels (about 3.5 GB/s
 * with SSE2); the float16 ones stay scalar (under 1 GB/s: vectorising them took a float
 * rounding trick and bought 10%). The x86 kernels are 5 to 45 times faster: float16 goes through
 * F16C's vcvtph2ps/vcvtps2ph (round to nearest even, NaN quieted, subnormals kept), bfloat16
 * through integer arithmetic on AVX2 or AVX-512F (the latter 1.2-1.4x faster here; for float16 it
 * is not, so float16 stays on AVX2). They handle a tail shorter than a block by running the block
 * code on a zero-padded copy, so every element goes through the same instructions. The AVX-512 BF16
 * conversion instructions are not used: they flush subnormals to zero.
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
    /* Round to nearest even; a carry into the exponent is right, up to infinity. A NaN is
     * truncated and gets the quiet bit. Integer selects only, so the loop vectorises. */
    uint32_t rounded = (u + 0x7fff + ((u >> 16) & 1)) >> 16, quiet = (u >> 16) | 0x40;
    return (uint16_t)((u & 0x7fffffff) > 0x7f800000 ? quiet : rounded);
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
    static inline uint16_t op##_##name##_elem(uint16_t x, uint16_t y)                              \
    {                                                                                              \
        return from_f32(half_##op(to_f32(x), to_f32(y)));                                          \
    }                                                                                              \
    void cgloo__reduce_##op##_##name(void *restrict inout, const void *restrict in, size_t n)      \
    {                                                                                              \
        CGLOO_REDUCE_LOOP(uint16_t, inout, in, n, op##_##name##_elem);                             \
    }
#define HALF_KERNELS(op)                                                                           \
    HALF_KERNEL(op, float16, half_to_f32, f32_to_half)                                             \
    HALF_KERNEL(op, bfloat16, bf16_to_f32, f32_to_bf16)
HALF_KERNELS(sum)
HALF_KERNELS(product)
HALF_KERNELS(min)
HALF_KERNELS(max)

#ifdef CGLOO_REDUCE_X86
/* Each x86 kernel runs a block function over whole blocks (16 elements for AVX2, 32 for
 * AVX-512: two vectors of float32, for instruction-level parallelism), then over a copy of the
 * tail padded with zeros. */
#define HALF_X86_KERNEL(op, fmt, isa, block, attr)                                                 \
    static attr void op##_##fmt##_##isa(void *restrict inout, const void *restrict in, size_t n)   \
    {                                                                                              \
        uint16_t *restrict a = inout;                                                              \
        const uint16_t *restrict b = in;                                                           \
        size_t i = 0;                                                                              \
        for (; i + (block) <= n; i += (block))                                                     \
            fmt##_##isa##_##op(a + i, b + i);                                                      \
        if (i < n) {                                                                               \
            uint16_t ta[block] = {0}, tb[block] = {0};                                             \
            memcpy(ta, a + i, (n - i) * sizeof *a);                                                \
            memcpy(tb, b + i, (n - i) * sizeof *b);                                                \
            fmt##_##isa##_##op(ta, tb);                                                            \
            memcpy(a + i, ta, (n - i) * sizeof *a);                                                \
        }                                                                                          \
    }

/* ---- AVX2 and F16C ---- */
#define HALF_AVX2 __attribute__((target("avx2,f16c")))

static inline HALF_AVX2 __m256 avx2_sum(__m256 x, __m256 y)
{
    return _mm256_add_ps(x, y);
}

static inline HALF_AVX2 __m256 avx2_product(__m256 x, __m256 y)
{
    return _mm256_mul_ps(x, y);
}

/* As cgloo__float32_min: _mm256_min_ps(p, q) is p < q ? p : q. */
static inline HALF_AVX2 __m256 avx2_min(__m256 x, __m256 y)
{
    return _mm256_or_ps(_mm256_min_ps(y, x), _mm256_min_ps(x, y));
}

static inline HALF_AVX2 __m256 avx2_max(__m256 x, __m256 y)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    return _mm256_xor_ps(avx2_min(_mm256_xor_ps(x, sign), _mm256_xor_ps(y, sign)), sign);
}

/* float16: F16C converts eight at a time, rounding to nearest even. */
#define F16_AVX2_BLOCK(op)                                                                         \
    static inline HALF_AVX2 void f16_avx2_##op(uint16_t *a, const uint16_t *b)                     \
    {                                                                                              \
        __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)a));                          \
        __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + 8)));                    \
        __m256 y0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b));                          \
        __m256 y1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 8)));                    \
        __m128i r0 = _mm256_cvtps_ph(avx2_##op(x0, y0), _MM_FROUND_TO_NEAREST_INT);                \
        __m128i r1 = _mm256_cvtps_ph(avx2_##op(x1, y1), _MM_FROUND_TO_NEAREST_INT);                \
        _mm_storeu_si128((__m128i *)a, r0);                                                        \
        _mm_storeu_si128((__m128i *)(a + 8), r1);                                                  \
    }

/* bfloat16: a 32-bit lane holds two elements. Shifting the lane left by 16 gives the even
 * element as a float32, masking off the low half gives the odd one; the op is element-wise, so
 * the two halves are computed apart and put back together, with no shuffles. */
static inline HALF_AVX2 __m256 bf16_avx2_even(__m256i v)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static inline HALF_AVX2 __m256 bf16_avx2_odd(__m256i v)
{
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
}

/* As f32_to_bf16 for a number, leaving the result in the high half of each lane: round to
 * nearest even. */
static inline HALF_AVX2 __m256i bf16_avx2_round(__m256 v)
{
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    return _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
}

/* bf16_avx2_quiet replaces the lanes of r where v is NaN by v with the quiet bit set. */
static inline HALF_AVX2 __m256i bf16_avx2_quiet(__m256i r, __m256 v)
{
    __m256 quiet = _mm256_or_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x400000)));
    __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), quiet, nan));
}

#define BF16_AVX2_BLOCK(op)                                                                        \
    static inline HALF_AVX2 void bf16_avx2_##op(uint16_t *a, const uint16_t *b)                    \
    {                                                                                              \
        __m256i x = _mm256_loadu_si256((const __m256i *)a);                                        \
        __m256i y = _mm256_loadu_si256((const __m256i *)b);                                        \
        __m256 ve = avx2_##op(bf16_avx2_even(x), bf16_avx2_even(y));                               \
        __m256 vo = avx2_##op(bf16_avx2_odd(x), bf16_avx2_odd(y));                                 \
        __m256i even = bf16_avx2_round(ve), odd = bf16_avx2_round(vo);                             \
        __m256 nan = _mm256_cmp_ps(ve, vo, _CMP_UNORD_Q);                                          \
        if (!_mm256_testz_ps(nan, nan)) {                                                          \
            even = bf16_avx2_quiet(even, ve);                                                      \
            odd = bf16_avx2_quiet(odd, vo);                                                        \
        }                                                                                          \
        odd = _mm256_and_si256(odd, _mm256_set1_epi32((int)0xffff0000u));                          \
        _mm256_storeu_si256((__m256i *)a, _mm256_or_si256(_mm256_srli_epi32(even, 16), odd));      \
    }

/* ---- AVX-512F ---- */
#define HALF_AVX512 __attribute__((target("avx512f")))

static inline HALF_AVX512 __m512 avx512_sum(__m512 x, __m512 y)
{
    return _mm512_add_ps(x, y);
}

static inline HALF_AVX512 __m512 avx512_product(__m512 x, __m512 y)
{
    return _mm512_mul_ps(x, y);
}

/* Bit operations on float vectors need AVX512DQ; the integer forms are in AVX512F. */
static inline HALF_AVX512 __m512 avx512_min(__m512 x, __m512 y)
{
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_min_ps(y, x)),
                                               _mm512_castps_si512(_mm512_min_ps(x, y))));
}

static inline HALF_AVX512 __m512 avx512_neg(__m512 x)
{
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
}

static inline HALF_AVX512 __m512 avx512_max(__m512 x, __m512 y)
{
    return avx512_neg(avx512_min(avx512_neg(x), avx512_neg(y)));
}

static inline HALF_AVX512 __m512i bf16_avx512_round(__m512 v)
{
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    return _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
}

static inline HALF_AVX512 __m512i bf16_avx512_quiet(__m512i r, __m512 v)
{
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(r, nan, _mm512_castps_si512(v), _mm512_set1_epi32(0x400000));
}

/* As BF16_AVX2_BLOCK, two vectors at a time; the ternary logic 0xf8 is a | (b & c). */
#define BF16_AVX512_HALF_BLOCK(op)                                                                 \
    static inline HALF_AVX512 void bf16_avx512_##op##_32(uint16_t *a, const uint16_t *b)           \
    {                                                                                              \
        const __m512i high = _mm512_set1_epi32((int)0xffff0000u);                                  \
        __m512i x = _mm512_loadu_si512(a), y = _mm512_loadu_si512(b);                              \
        __m512 xe = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));                                 \
        __m512 ye = _mm512_castsi512_ps(_mm512_slli_epi32(y, 16));                                 \
        __m512 xo = _mm512_castsi512_ps(_mm512_and_si512(x, high));                                \
        __m512 yo = _mm512_castsi512_ps(_mm512_and_si512(y, high));                                \
        __m512 ve = avx512_##op(xe, ye), vo = avx512_##op(xo, yo);                                 \
        __m512i even = bf16_avx512_round(ve), odd = bf16_avx512_round(vo);                         \
        if (_mm512_cmp_ps_mask(ve, vo, _CMP_UNORD_Q)) {                                            \
            even = bf16_avx512_quiet(even, ve);                                                    \
            odd = bf16_avx512_quiet(odd, vo);                                                      \
        }                                                                                          \
        even = _mm512_srli_epi32(even, 16);                                                        \
        _mm512_storeu_si512(a, _mm512_ternarylogic_epi32(even, odd, high, 0xf8));                  \
    }
#define BF16_AVX512_BLOCK(op)                                                                      \
    BF16_AVX512_HALF_BLOCK(op)                                                                     \
    static inline HALF_AVX512 void bf16_avx512_##op(uint16_t *a, const uint16_t *b)                \
    {                                                                                              \
        bf16_avx512_##op##_32(a, b);                                                               \
        bf16_avx512_##op##_32(a + 32, b + 32);                                                     \
    }

#define HALF_X86_KERNELS(op)                                                                       \
    F16_AVX2_BLOCK(op)                                                                             \
    BF16_AVX2_BLOCK(op)                                                                            \
    BF16_AVX512_BLOCK(op)                                                                          \
    HALF_X86_KERNEL(op, f16, avx2, 16, HALF_AVX2)                                                  \
    HALF_X86_KERNEL(op, bf16, avx2, 16, HALF_AVX2)                                                 \
    HALF_X86_KERNEL(op, bf16, avx512, 64, HALF_AVX512)
HALF_X86_KERNELS(sum)
HALF_X86_KERNELS(product)
HALF_X86_KERNELS(min)
HALF_X86_KERNELS(max)

void cgloo__reduce_fill_half_avx2(cgloo__reduce_table t)
{
#define HALF_FILL(op, fmt, name, isa) t[cgloo__op_##op][cgloo__dtype_##name] = op##_##fmt##_##isa;
#define HALF_FILL_OP(op) HALF_FILL(op, f16, float16, avx2) HALF_FILL(op, bf16, bfloat16, avx2)
    HALF_FILL_OP(sum)
    HALF_FILL_OP(product)
    HALF_FILL_OP(min)
    HALF_FILL_OP(max)
#undef HALF_FILL_OP
}

/* Only bfloat16: float16 through AVX-512F's wider vcvtph2ps/vcvtps2ph measured no faster. */
void cgloo__reduce_fill_half_avx512(cgloo__reduce_table t)
{
#define HALF_FILL_OP(op) HALF_FILL(op, bf16, bfloat16, avx512)
    HALF_FILL_OP(sum)
    HALF_FILL_OP(product)
    HALF_FILL_OP(min)
    HALF_FILL_OP(max)
#undef HALF_FILL_OP
#undef HALF_FILL
}
#endif
