/*
 * The reduction kernel table [op][dtype] and its run-time dispatch.
 *
 * The portable kernels below are plain C loops generated from the dtype list in kernels.h; the
 * compiler vectorises them for the base instruction set (SSE2 on x86-64). On first use the
 * dispatcher copies that table and overwrites the entries for which a wider instruction set
 * pays on this processor (kernels_x86.c, half.c). CGLOO_KERNELS=scalar|avx2|avx512 caps the
 * choice, so tests and users can force the portable kernels.
 */
#include "reduce/kernels.h"

#include <pthread.h>

#ifdef CGLOO_REDUCE_X86
#include <cpuid.h>
#endif

/* One portable kernel: a restrict loop over element combiner `expr` (kernels.h). */
#define REDUCE_KERNEL(op, T, name, expr)                                                           \
    static inline T op##_##name##_elem(T x, T y)                                                   \
    {                                                                                              \
        return expr;                                                                               \
    }                                                                                              \
    static void op##_##name(void *restrict inout, const void *restrict in, size_t n)               \
    {                                                                                              \
        CGLOO_REDUCE_LOOP(T, inout, in, n, op##_##name##_elem);                                    \
    }

#define REDUCE_DEFINE(E, T, U, name, kind) CGLOO_REDUCE_##kind##_OPS(REDUCE_KERNEL, T, U, name)
CGLOO_REDUCE_DTYPES(REDUCE_DEFINE)

/* The table: every kernel generated above at [op][dtype], and the half kernels of half.c. */
#define REDUCE_ENTRY(op, T, name, expr) [cgloo__op_##op][cgloo__dtype_##name] = op##_##name,
#define REDUCE_HALF_ENTRIES(name)                                                                  \
    [CGLOO_SUM][cgloo__dtype_##name] = cgloo__reduce_sum_##name,                                   \
    [CGLOO_PRODUCT][cgloo__dtype_##name] = cgloo__reduce_product_##name,                           \
    [CGLOO_MIN][cgloo__dtype_##name] = cgloo__reduce_min_##name,                                   \
    [CGLOO_MAX][cgloo__dtype_##name] = cgloo__reduce_max_##name,
#define REDUCE_ENTRIES_INT(name, T, U) CGLOO_REDUCE_INT_OPS(REDUCE_ENTRY, T, U, name)
#define REDUCE_ENTRIES_FLOAT(name, T, U) CGLOO_REDUCE_FLOAT_OPS(REDUCE_ENTRY, T, U, name)
#define REDUCE_ENTRIES_HALF(name, T, U) REDUCE_HALF_ENTRIES(name)
#define REDUCE_ENTRIES_BOOL(name, T, U) CGLOO_REDUCE_BOOL_OPS(REDUCE_ENTRY, T, U, name)
#define REDUCE_ENTRIES_COMPLEX(name, T, U) CGLOO_REDUCE_COMPLEX_OPS(REDUCE_ENTRY, T, U, name)
#define REDUCE_ENTRIES(E, T, U, name, kind) REDUCE_ENTRIES_##kind(name, T, U)

/* Bitwise ops on floating-point dtypes, and min and max on complex ones, stay NULL: the pair is
 * invalid. */
static const cgloo__reduce_table reduce_portable = {CGLOO_REDUCE_DTYPES(REDUCE_ENTRIES)};

static const char *const reduce_isa_names[CGLOO_REDUCE_ISA_COUNT] = {
    [CGLOO_REDUCE_PORTABLE] = "scalar",
    [CGLOO_REDUCE_AVX2] = "avx2",
    [CGLOO_REDUCE_AVX512] = "avx512",
};

const char *cgloo__reduce_isa_name(cgloo__reduce_isa isa)
{
    return (unsigned)isa < CGLOO_REDUCE_ISA_COUNT ? reduce_isa_names[isa] : NULL;
}

/* reduce_cpu_best returns the widest instruction set both this build and this processor have
 * (the compiler's cpu checks include the operating system's support for the registers). */
static cgloo__reduce_isa reduce_cpu_best(void)
{
#ifdef CGLOO_REDUCE_X86
    unsigned eax, ebx, ecx = 0, edx;
    __builtin_cpu_init();
    /* Not every compiler's __builtin_cpu_supports knows "f16c": ask cpuid (leaf 1, ECX). */
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_F16C) ||
        !__builtin_cpu_supports("avx2"))
        return CGLOO_REDUCE_PORTABLE;
    return __builtin_cpu_supports("avx512f") ? CGLOO_REDUCE_AVX512 : CGLOO_REDUCE_AVX2;
#else
    return CGLOO_REDUCE_PORTABLE;
#endif
}

/* reduce_build fills t with the kernels of `isa`, which the processor must have. */
static void reduce_build(cgloo__reduce_table t, cgloo__reduce_isa isa)
{
    memcpy(t, reduce_portable, sizeof(cgloo__reduce_table));
#ifdef CGLOO_REDUCE_X86
    if (isa >= CGLOO_REDUCE_AVX2) {
        cgloo__reduce_fill_half_avx2(t);
        cgloo__reduce_fill_avx2(t);
    }
    if (isa >= CGLOO_REDUCE_AVX512) {
        cgloo__reduce_fill_half_avx512(t);
        cgloo__reduce_fill_avx512(t);
    }
#endif
}

static cgloo__reduce_table reduce_active;
static cgloo__reduce_isa reduce_active_isa;
static pthread_once_t reduce_once = PTHREAD_ONCE_INIT;

static void reduce_pick(void)
{
    cgloo__reduce_isa isa = reduce_cpu_best();
    const char *want = getenv("CGLOO_KERNELS");
    for (int i = 0; want && i < CGLOO_REDUCE_ISA_COUNT; i++)
        if (strcmp(want, reduce_isa_names[i]) == 0 && (cgloo__reduce_isa)i < isa)
            isa = (cgloo__reduce_isa)i;
    reduce_build(reduce_active, isa);
    reduce_active_isa = isa;
}

cgloo__reduce_kernel cgloo__reduce_kernel_for(cgloo_op op, cgloo_dtype dtype)
{
    if ((unsigned)op >= CGLOO_OP_COUNT || (unsigned)dtype >= CGLOO_DTYPE_COUNT)
        return NULL;
    pthread_once(&reduce_once, reduce_pick);
    return reduce_active[op][dtype];
}

cgloo__reduce_isa cgloo__reduce_isa_active(void)
{
    pthread_once(&reduce_once, reduce_pick);
    return reduce_active_isa;
}

cgloo__reduce_kernel cgloo__reduce_kernel_isa(cgloo_op op, cgloo_dtype dtype, cgloo__reduce_isa isa)
{
    if ((unsigned)op >= CGLOO_OP_COUNT || (unsigned)dtype >= CGLOO_DTYPE_COUNT ||
        (unsigned)isa >= CGLOO_REDUCE_ISA_COUNT || isa > reduce_cpu_best())
        return NULL;
    cgloo__reduce_table t;
    reduce_build(t, isa);
    return t[op][dtype];
}

int cgloo_reduce_local(void *inout, const void *in, size_t count, cgloo_dtype dtype, cgloo_op op)
{
    cgloo__reduce_kernel kernel = cgloo__reduce_kernel_for(op, dtype);
    if (!kernel)
        return CGLOO_EINVAL;
    if (count == 0)
        return CGLOO_OK;
    if (!inout || !in)
        return CGLOO_EINVAL;
    kernel(inout, in, count);
    return CGLOO_OK;
}
