/*
 * The integer, float32 and float64 kernels compiled again for AVX2 and AVX-512F. The source is
 * the portable one (the combiners and the loop of kernels.h); only the instruction set the
 * compiler vectorises for differs, so results are identical.
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
#define X86_AVX2(op, T, name, expr) X86_KERNEL(avx2, "avx2", op, T, name)
#define X86_AVX512(op, T, name, expr) X86_KERNEL(avx512, "avx512f", op, T, name)
#define X86_KERNELS(E, T, U, name, kind)                                                           \
    CGLOO_REDUCE_##kind##_OPS(X86_AVX2, T, U, name)                                                \
        CGLOO_REDUCE_##kind##_OPS(X86_AVX512, T, U, name)
CGLOO_REDUCE_DTYPES(X86_KERNELS)

#define X86_SET(isa, op, T, name, expr)                                                            \
    t[cgloo__op_##op][cgloo__dtype_##name] = op##_##name##_##isa;
#define X86_SET_AVX2(op, T, name, expr) X86_SET(avx2, op, T, name, expr)
#define X86_SET_AVX512(op, T, name, expr) X86_SET(avx512, op, T, name, expr)
#define X86_FILL_AVX2(E, T, U, name, kind) CGLOO_REDUCE_##kind##_OPS(X86_SET_AVX2, T, U, name)
#define X86_FILL_AVX512(E, T, U, name, kind) CGLOO_REDUCE_##kind##_OPS(X86_SET_AVX512, T, U, name)

void cgloo__reduce_fill_avx2(cgloo__reduce_table t)
{
    CGLOO_REDUCE_DTYPES(X86_FILL_AVX2)
}

void cgloo__reduce_fill_avx512(cgloo__reduce_table t)
{
    CGLOO_REDUCE_DTYPES(X86_FILL_AVX512)
}

#endif
