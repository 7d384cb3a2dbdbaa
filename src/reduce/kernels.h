/*
 * What the kernel files of src/reduce share: the dtype and op lists that generate the kernel
 * table, the loop shape every kernel uses, and the functions that fill a table for one
 * instruction set. reduce_kernel.h is the interface the rest of the library sees; this header is
 * for src/reduce and the tests.
 *
 * Semantics every instruction set agrees on (the tests compare them):
 * - Integers wrap on overflow (two's complement), as unsigned arithmetic of the same width.
 * - bool takes any non-zero byte as true and writes 0 or 1: sum and max are a logical or,
 *   product and min a logical and, and band, bor and bxor act on the truth values, not the bits
 *   (0x01 band 0x02 is 1). That is what PyTorch's backends give for bool tensors.
 * - complex64 and complex128 have sum and product only (complex numbers have no order, and no
 *   bits to combine): (a + bi)(c + di) = (ac - bd) + (ad + bc)i, every product and sum rounded
 *   to the part's type with no fused multiply-add (the build says -ffp-contract=off) and no
 *   recovery of infinities as in C's Annex G: the formula numpy and PyTorch use.
 * - float16 and bfloat16 are widened to float32, combined, and rounded back to nearest, ties
 *   to even. float32 holds the exact sum or product of two halves or two bfloat16s closely
 *   enough that this one rounding gives the correctly rounded result. Overflow gives infinity,
 *   subnormals are kept, a NaN stays a NaN (quiet).
 * - min and max follow IEEE 754-2019 minimum and maximum: a NaN in either input gives NaN, and
 *   -0 is smaller than +0, so both are commutative. sum and product propagate NaN as IEEE does.
 * - Pointers must be aligned for their element type; `in` and `inout` must not overlap unless
 *   they are the same buffer.
 */
#ifndef CGLOO_REDUCE_KERNELS_H
#define CGLOO_REDUCE_KERNELS_H

#include "reduce/reduce_kernel.h"

/* Every dtype once: (ENUM, ctype, U, name, kind), U being the unsigned type of the same width
 * (a complex's part type). The kind picks the ops and how elements combine: INT (all seven ops,
 * wrapping), FLOAT (no bitwise ops), HALF (stored as uint16_t, computed in float32; kernels in
 * half.c), BOOL (all seven, on truth values) and COMPLEX (sum and product). bool's name is
 * bool_ because <stdbool.h> makes `bool` a macro, which would expand inside these lists. */
#define CGLOO_REDUCE_DTYPES(X)                                                                     \
    X(INT8, int8_t, uint8_t, int8, INT)                                                            \
    X(UINT8, uint8_t, uint8_t, uint8, INT)                                                         \
    X(INT16, int16_t, uint16_t, int16, INT)                                                        \
    X(UINT16, uint16_t, uint16_t, uint16, INT)                                                     \
    X(INT32, int32_t, uint32_t, int32, INT)                                                        \
    X(UINT32, uint32_t, uint32_t, uint32, INT)                                                     \
    X(INT64, int64_t, uint64_t, int64, INT)                                                        \
    X(UINT64, uint64_t, uint64_t, uint64, INT)                                                     \
    X(FLOAT16, uint16_t, uint16_t, float16, HALF)                                                  \
    X(BFLOAT16, uint16_t, uint16_t, bfloat16, HALF)                                                \
    X(FLOAT32, float, uint32_t, float32, FLOAT)                                                    \
    X(FLOAT64, double, uint64_t, float64, FLOAT)                                                   \
    X(BOOL, uint8_t, uint8_t, bool_, BOOL)                                                         \
    X(COMPLEX64, cgloo__complex64, float, complex64, COMPLEX)                                      \
    X(COMPLEX128, cgloo__complex128, double, complex128, COMPLEX)

/* Every op once: (ENUM, name, bitwise). */
#define CGLOO_REDUCE_OPS(X)                                                                        \
    X(SUM, sum, 0)                                                                                 \
    X(PRODUCT, product, 0)                                                                         \
    X(MIN, min, 0)                                                                                 \
    X(MAX, max, 0)                                                                                 \
    X(BAND, band, 1)                                                                               \
    X(BOR, bor, 1)                                                                                 \
    X(BXOR, bxor, 1)

/* Lower-case aliases of the enum constants, so that the names in the lists can index the
 * table: t[cgloo__op_sum][cgloo__dtype_float32]. */
enum {
#define CGLOO_REDUCE_OP_ALIAS_(E, name, bitwise) cgloo__op_##name = CGLOO_##E,
    CGLOO_REDUCE_OPS(CGLOO_REDUCE_OP_ALIAS_)
#undef CGLOO_REDUCE_OP_ALIAS_
#define CGLOO_REDUCE_DTYPE_ALIAS_(E, T, U, name, kind) cgloo__dtype_##name = CGLOO_##E,
        CGLOO_REDUCE_DTYPES(CGLOO_REDUCE_DTYPE_ALIAS_)
#undef CGLOO_REDUCE_DTYPE_ALIAS_
};

typedef cgloo__reduce_kernel cgloo__reduce_table[CGLOO_OP_COUNT][CGLOO_DTYPE_COUNT];

/* Instruction sets, in the order the dispatcher tries them (CGLOO_KERNELS names them). */
typedef enum cgloo__reduce_isa {
    CGLOO_REDUCE_PORTABLE, /* "scalar": plain C, vectorised by the compiler for the base ISA */
    CGLOO_REDUCE_AVX2,     /* "avx2": AVX2, and F16C for float16 */
    CGLOO_REDUCE_AVX512,   /* "avx512": AVX2, and AVX-512F for the kernels where it pays */
    CGLOO_REDUCE_ISA_COUNT
} cgloo__reduce_isa;

/* The element combiners of each kind, as K(op, T, name, expression of x and y). Integers
 * compute in the unsigned type U of the same width so that overflow wraps instead of being
 * undefined; a product multiplies by 1u first, since uint16_t operands would be promoted to int,
 * where 65535 * 65535 overflows. Every kernel file instantiates these, so all instruction sets
 * agree. */
#define CGLOO_REDUCE_INT_OPS(K, T, U, name)                                                        \
    K(sum, T, name, (T)((U)x + (U)y))                                                              \
    K(product, T, name, (T)(U)(1u * (U)x * (U)y))                                                  \
    K(min, T, name, y < x ? y : x)                                                                 \
    K(max, T, name, y > x ? y : x)                                                                 \
    K(band, T, name, (T)(x & y))                                                                   \
    K(bor, T, name, (T)(x | y))                                                                    \
    K(bxor, T, name, (T)(x ^ y))
#define CGLOO_REDUCE_FLOAT_OPS(K, T, U, name)                                                      \
    K(sum, T, name, x + y)                                                                         \
    K(product, T, name, (T)(x * y))                                                                \
    K(min, T, name, cgloo__##name##_min(x, y))                                                     \
    K(max, T, name, cgloo__##name##_max(x, y))
#define CGLOO_REDUCE_HALF_OPS(K, T, U, name) /* half.c has its own */
#define CGLOO_REDUCE_BOOL_OPS(K, T, U, name)                                                       \
    K(sum, T, name, (T)((x | y) != 0))                                                             \
    K(product, T, name, (T)((x != 0) & (y != 0)))                                                  \
    K(min, T, name, (T)((x != 0) & (y != 0)))                                                      \
    K(max, T, name, (T)((x | y) != 0))                                                             \
    K(band, T, name, (T)((x != 0) & (y != 0)))                                                     \
    K(bor, T, name, (T)((x | y) != 0))                                                             \
    K(bxor, T, name, (T)((x != 0) ^ (y != 0)))
#define CGLOO_REDUCE_COMPLEX_OPS(K, T, U, name)                                                    \
    K(sum, T, name, cgloo__##name##_add(x, y))                                                     \
    K(product, T, name, cgloo__##name##_mul(x, y))

/* The loop every kernel runs: whole blocks of 64 bytes, whose fixed trip count the compiler
 * vectorises even at -O2, then the remaining elements one by one. `f(a, b)` combines two
 * elements of type T. */
#define CGLOO_REDUCE_LOOP(T, inout, in, n, f)                                                      \
    do {                                                                                           \
        T *restrict a_ = (inout);                                                                  \
        const T *restrict b_ = (in);                                                               \
        enum { block_ = 64 / sizeof(T) };                                                          \
        size_t i_ = 0;                                                                             \
        for (; i_ + block_ <= (n); i_ += block_)                                                   \
            for (size_t j_ = 0; j_ < block_; j_++)                                                 \
                a_[i_ + j_] = f(a_[i_ + j_], b_[i_ + j_]);                                         \
        for (; i_ < (n); i_++)                                                                     \
            a_[i_] = f(a_[i_], b_[i_]);                                                            \
    } while (0)

/* IEEE 754-2019 minimum and maximum, written so the compiler vectorises them: m1 and m2 agree
 * unless an input is NaN (each then holds one) or the inputs are zeros of both signs; OR-ing
 * their bits gives NaN (an all-ones exponent and a non-zero fraction survive any OR) or -0.
 * max is min with both signs flipped. */
#define CGLOO_REDUCE_MINMAX(name, T, U, signbit)                                                   \
    static inline T cgloo__##name##_min(T x, T y)                                                  \
    {                                                                                              \
        T m1 = y < x ? y : x, m2 = x < y ? x : y;                                                  \
        U u1, u2;                                                                                  \
        memcpy(&u1, &m1, sizeof u1);                                                               \
        memcpy(&u2, &m2, sizeof u2);                                                               \
        u1 |= u2;                                                                                  \
        memcpy(&m1, &u1, sizeof m1);                                                               \
        return m1;                                                                                 \
    }                                                                                              \
    static inline T cgloo__##name##_neg(T x)                                                       \
    {                                                                                              \
        U u;                                                                                       \
        memcpy(&u, &x, sizeof u);                                                                  \
        u ^= (signbit);                                                                            \
        memcpy(&x, &u, sizeof x);                                                                  \
        return x;                                                                                  \
    }                                                                                              \
    static inline T cgloo__##name##_max(T x, T y)                                                  \
    {                                                                                              \
        return cgloo__##name##_neg(                                                                \
            cgloo__##name##_min(cgloo__##name##_neg(x), cgloo__##name##_neg(y)));                  \
    }
CGLOO_REDUCE_MINMAX(float32, float, uint32_t, UINT32_C(0x80000000))
CGLOO_REDUCE_MINMAX(float64, double, uint64_t, UINT64_C(0x8000000000000000))

/* A complex number as its parts, real then imaginary: the layout of C's _Complex types, C++'s
 * std::complex and numpy's complex types. A struct rather than _Complex, whose product follows
 * C's Annex G (a library call for the infinities), where PyTorch and numpy multiply plainly. */
#define CGLOO_REDUCE_COMPLEX(name, R)                                                              \
    typedef struct cgloo__##name {                                                                 \
        R re, im;                                                                                  \
    } cgloo__##name;                                                                               \
    static inline cgloo__##name cgloo__##name##_add(cgloo__##name x, cgloo__##name y)              \
    {                                                                                              \
        return (cgloo__##name){x.re + y.re, x.im + y.im};                                          \
    }                                                                                              \
    static inline cgloo__##name cgloo__##name##_mul(cgloo__##name x, cgloo__##name y)              \
    {                                                                                              \
        return (cgloo__##name){x.re * y.re - x.im * y.im, x.re * y.im + x.im * y.re};              \
    }
CGLOO_REDUCE_COMPLEX(complex64, float)
CGLOO_REDUCE_COMPLEX(complex128, double)

/* cgloo__reduce_kernel_isa returns the kernel for (op, dtype) built for `isa` itself, or NULL
 * when the pair is invalid, the build lacks that ISA, or this processor cannot run it. For
 * tests and benchmarks that compare instruction sets in one process. */
cgloo__reduce_kernel cgloo__reduce_kernel_isa(cgloo_op op, cgloo_dtype dtype,
                                              cgloo__reduce_isa isa);

/* cgloo__reduce_isa_name names an instruction set ("scalar", "avx2", "avx512"). */
const char *cgloo__reduce_isa_name(cgloo__reduce_isa isa);

/* cgloo__reduce_isa_active returns the instruction set cgloo__reduce_kernel_for picked. */
cgloo__reduce_isa cgloo__reduce_isa_active(void);

/* The portable float16 and bfloat16 kernels (half.c). */
#define CGLOO_REDUCE_HALF_DECLARE(op)                                                              \
    void cgloo__reduce_##op##_float16(void *restrict inout, const void *restrict in, size_t n);    \
    void cgloo__reduce_##op##_bfloat16(void *restrict inout, const void *restrict in, size_t n);
CGLOO_REDUCE_HALF_DECLARE(sum)
CGLOO_REDUCE_HALF_DECLARE(product)
CGLOO_REDUCE_HALF_DECLARE(min)
CGLOO_REDUCE_HALF_DECLARE(max)

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
/* Functions with __attribute__((target("avx2"))) and friends, chosen at run time. */
#define CGLOO_REDUCE_X86 1
#endif

/* Fillers for the wider instruction sets: each overwrites the entries of `t` it has a kernel
 * for. Call them only when the processor has the instruction set. */
void cgloo__reduce_fill_half_avx2(cgloo__reduce_table t);
void cgloo__reduce_fill_half_avx512(cgloo__reduce_table t);
void cgloo__reduce_fill_avx2(cgloo__reduce_table t);
void cgloo__reduce_fill_avx512(cgloo__reduce_table t);

/* Conversions between float32 and the 16-bit formats, round to nearest even (half.c). */
float cgloo__half_to_float(uint16_t h);
uint16_t cgloo__float_to_half(float f);
float cgloo__bf16_to_float(uint16_t b);
uint16_t cgloo__float_to_bf16(float f);

#endif
