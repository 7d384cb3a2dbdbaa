/*
 * The integer, bool, float32, float64 and complex kernels compiled again for AVX2, and some for
 * AVX-512F. The source is the portable one (the combiners and the loop of kernels.h); only the
 * instruction set the compiler vectorises for differs, so results are identical.
 *
 * What pays (one thread, 256 KiB in cache, against the SSE2 build of the same loop): AVX2 is
 * 1.2-1.3x for sum and the bitwise ops, 1.5-2.4x for product, min and max (bool: 1.5-1.7x;
 * complex product: 1.9-2.5x). AVX-512F is no
 * faster than AVX2 for those (sum and product of floats are 10% slower), so it is used only
 * where it has instructions AVX2 lacks: min and max of 64-bit integers (vpminsq, vpmaxuq, ...:
 * 1.4-1.7x AVX2) and of floats (the IEEE minimum/maximum bit logic fuses into vpternlogd:
 * 1.2-1.8x AVX2). From memory (64 MiB) all of them are bound by memory bandwidth; AVX2 still
 * reaches it where SSE2 falls 15% short.
 */
#include "reduce/kernels.h"

#ifdef CGLOO_REDUCE_X86

#define X86_ELEM(op, T, name, expr)                                                                \
    static inline T op##_##name##_elem(T x, T y)                                                   \
    {                                                                                              \
        return expr;                                                                               \
    }
#define X86_ELEMS(E, T, U, name, kind) CGLOO_REDUCE_##kind##_OPS(X86_ELEM, T, U, name)
CGLOO_REDUCE_DTYPES(X86_ELEMS)

#define X86_KERNEL(isa, features, op, T, name)                                                     \
    static __attribute__((target(features))) void op##_##name##_##isa(                             \
        void *restrict inout, const void *restrict in, size_t n)                                   \
    {                                                                                              \
        CGLOO_REDUCE_LOOP(T, inout, in, n, op##_##name##_elem);                                    \
    }
#define X86_SET(isa, op, name) t[cgloo__op_##op][cgloo__dtype_##name] = op##_##name##_##isa;

/* AVX2: every integer and float kernel. */
#define X86_AVX2(op, T, name, expr) X86_KERNEL(avx2, "avx2", op, T, name)
#define X86_AVX2_KERNELS(E, T, U, name, kind) CGLOO_REDUCE_##kind##_OPS(X86_AVX2, T, U, name)
CGLOO_REDUCE_DTYPES(X86_AVX2_KERNELS)

#define X86_SET_AVX2(op, T, name, expr) X86_SET(avx2, op, name)
#define X86_FILL_AVX2(E, T, U, name, kind) CGLOO_REDUCE_##kind##_OPS(X86_SET_AVX2, T, U, name)

void cgloo__reduce_fill_avx2(cgloo__reduce_table t){CGLOO_REDUCE_DTYPES(X86_FILL_AVX2)}

/* AVX-512F: the kernels that measured faster than AVX2, as (op, T, name). */
#define X86_AVX512_LIST(K)                                                                         \
    K(min, int64_t, int64)                                                                         \
    K(max, int64_t, int64)                                                                         \
    K(min, uint64_t, uint64)                                                                       \
    K(max, uint64_t, uint64)                                                                       \
    K(min, float, float32)                                                                         \
    K(max, float, float32)                                                                         \
    K(min, double, float64)                                                                        \
    K(max, double, float64)

#define X86_AVX512(op, T, name) X86_KERNEL(avx512, "avx512f", op, T, name)
X86_AVX512_LIST(X86_AVX512)

    void cgloo__reduce_fill_avx512(cgloo__reduce_table t)
{
#define X86_SET_AVX512(op, T, name) X86_SET(avx512, op, name)
    X86_AVX512_LIST(X86_SET_AVX512)
#undef X86_SET_AVX512
}

#endif
