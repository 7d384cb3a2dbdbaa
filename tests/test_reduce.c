/*
 * Reduction kernels: every (op, dtype) against a reference computed here, independently of
 * src/reduce, for the dispatched kernels, the portable ones (CGLOO_KERNELS=scalar) and every
 * instruction set this processor has.
 *
 * The reference computes in double and rounds once to the dtype (round to nearest even, with
 * rint). That is the exact answer: double holds the sum of two float32, float16 or bfloat16
 * values precisely enough (53 >= 2 * 24 + 2 bits) and their product exactly.
 *
 * NaN semantics checked here: sum and product propagate NaN; min and max are IEEE 754-2019
 * minimum and maximum, so a NaN in either input gives NaN and min(-0, +0) = -0,
 * max(-0, +0) = +0 in either order. NaN payloads are not compared.
 *
 * bool takes any non-zero byte as true and writes 0 or 1. complex64 and complex128 multiply as
 * (a + bi)(c + di) = (ac - bd) + (ad + bc)i with every product and sum rounded to the part's
 * type (no fused multiply-add); for float32 parts the reference runs each step in double and
 * rounds it to float, which is the same (53 >= 2 * 24 + 2 again).
 */
#include "coll_util.h"
#include "reduce/kernels.h"

#include <complex.h> /* to check complex64's layout against float _Complex */
#include <pthread.h>

static const size_t counts[] = {0, 1, 3, 17, 1000};

/* ---- the reference ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ref_round rounds v to p significand bits with exponents emin..emax (subnormals below emin,
 * infinity above), to nearest even. */
static double ref_round(double v, int p, int emin, int emax)
{
    if (isnan(v) || isinf(v) || v == 0)
        return v;
    int e = ilogb(v) < emin ? emin : ilogb(v);
    double quantum = ldexp(1.0, e - (p - 1));
    double r = rint(v / quantum) * quantum;
    return fabs(r) >= ldexp(1.0, emax + 1) ? copysign(INFINITY, v) : r;
}

static double ref_from_half(uint16_t h)
{
    int e = (h >> 10) & 0x1f;
    double m = h & 0x3ff, v;
    if (e == 0x1f)
        v = m ? NAN : INFINITY;
    else
        v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

/* ref_to_half encodes a NaN or a value binary16 represents exactly. */
static uint16_t ref_to_half(double v)
{
    uint16_t sign = signbit(v) ? 0x8000 : 0;
    double a = fabs(v);
    if (isnan(v))
        return 0x7e00;
    if (isinf(v))
        return sign | 0x7c00;
    if (a < ldexp(1.0, -14))
        return sign | (uint16_t)ldexp(a, 24);
    int e = ilogb(a);
    return sign | (uint16_t)((e + 15) << 10) | (uint16_t)(ldexp(a, 10 - e) - 1024);
}

static double ref_from_bf16(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t ref_to_bf16(double v)
{
    float f = (float)v; /* exact: v is a bfloat16 value or NaN */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

static double ref_minmax(cgloo_op op, double x, double y)
{
    if (isnan(x) || isnan(y))
        return NAN;
    if (x == y) /* equal, or zeros of both signs */
        return (signbit(x) != 0) == (op == CGLOO_MIN) ? x : y;
    return (x < y) == (op == CGLOO_MIN) ? x : y;
}

static double ref_float_op(cgloo_op op, double x, double y)
{
    switch (op) {
    case CGLOO_SUM:
        return x + y;
    case CGLOO_PRODUCT:
        return x * y;
    default:
        return ref_minmax(op, x, y);
    }
}

/* ref_float combines element i of a and b (a float dtype) and rounds to the dtype. */
static double ref_float(cgloo_op op, cgloo_dtype t, const void *a, const void *b, size_t i)
{
    switch (t) {
    case CGLOO_FLOAT16:
        return ref_round(ref_float_op(op, ref_from_half(((const uint16_t *)a)[i]),
                                      ref_from_half(((const uint16_t *)b)[i])),
                         11, -14, 15);
    case CGLOO_BFLOAT16:
        return ref_round(ref_float_op(op, ref_from_bf16(((const uint16_t *)a)[i]),
                                      ref_from_bf16(((const uint16_t *)b)[i])),
                         8, -126, 127);
    case CGLOO_FLOAT32:
        return ref_round(ref_float_op(op, ((const float *)a)[i], ((const float *)b)[i]), 24, -126,
                         127);
    default:
        return ref_float_op(op, ((const double *)a)[i], ((const double *)b)[i]);
    }
}

static int dtype_is_signed(cgloo_dtype t)
{
    return t == CGLOO_INT8 || t == CGLOO_INT16 || t == CGLOO_INT32 || t == CGLOO_INT64;
}

/* ref_int combines element i of a and b as unsigned 64-bit arithmetic (which wraps like the
 * dtype in its low bits) or signed comparisons; the caller truncates to the dtype's width. */
static uint64_t ref_int(cgloo_op op, cgloo_dtype t, const void *a, const void *b, size_t i)
{
    uint64_t x = 0, y = 0;
    size_t es = cgloo_dtype_size(t);
    memcpy(&x, (const char *)a + i * es, es); /* little-endian: the low bytes */
    memcpy(&y, (const char *)b + i * es, es);
    if (dtype_is_signed(t)) { /* sign-extend */
        unsigned shift = 64 - 8 * (unsigned)es;
        x = (uint64_t)((int64_t)(x << shift) >> shift);
        y = (uint64_t)((int64_t)(y << shift) >> shift);
    }
    int less = dtype_is_signed(t) ? (int64_t)x < (int64_t)y : x < y;
    switch (op) {
    case CGLOO_SUM:
        return x + y;
    case CGLOO_PRODUCT:
        return x * y;
    case CGLOO_MIN:
        return less ? x : y;
    case CGLOO_MAX:
        return less ? y : x;
    case CGLOO_BAND:
        return x & y;
    case CGLOO_BOR:
        return x | y;
    default:
        return x ^ y;
    }
}

/* ref_bool combines element i of a and b as truth values: any non-zero byte is true. */
static uint8_t ref_bool(cgloo_op op, const void *a, const void *b, size_t i)
{
    int x = ((const uint8_t *)a)[i] != 0, y = ((const uint8_t *)b)[i] != 0;
    switch (op) {
    case CGLOO_PRODUCT:
    case CGLOO_MIN:
    case CGLOO_BAND:
        return x && y;
    case CGLOO_BXOR:
        return x != y;
    default: /* sum, max, bor */
        return x || y;
    }
}

/* ref_part rounds v to a part of complex dtype t. */
static double ref_part(cgloo_dtype t, double v)
{
    return t == CGLOO_COMPLEX64 ? (double)(float)v : v;
}

/* ref_part_at reads part k (2 i is element i's real part) of a complex buffer. */
static double ref_part_at(cgloo_dtype t, const void *p, size_t k)
{
    return t == CGLOO_COMPLEX64 ? ((const float *)p)[k] : ((const double *)p)[k];
}

/* ref_complex writes element i of a (op) b, complex dtype t, to out. */
static void ref_complex(cgloo_op op, cgloo_dtype t, const void *a, const void *b, size_t i,
                        void *out)
{
    double xr = ref_part_at(t, a, 2 * i), xi = ref_part_at(t, a, 2 * i + 1);
    double yr = ref_part_at(t, b, 2 * i), yi = ref_part_at(t, b, 2 * i + 1), r[2];
    if (op == CGLOO_SUM) {
        r[0] = ref_part(t, xr + yr);
        r[1] = ref_part(t, xi + yi);
    } else {
        r[0] = ref_part(t, ref_part(t, xr * yr) - ref_part(t, xi * yi));
        r[1] = ref_part(t, ref_part(t, xr * yi) + ref_part(t, xi * yr));
    }
    float f[2] = {(float)r[0], (float)r[1]};
    memcpy(out, t == CGLOO_COMPLEX64 ? (void *)f : (void *)r, cgloo_dtype_size(t));
}

/* ref_apply writes the reference of a (op) b into out, n elements. */
static void ref_apply(cgloo_op op, cgloo_dtype t, const void *a, const void *b, void *out, size_t n)
{
    size_t es = cgloo_dtype_size(t);
    for (size_t i = 0; i < n; i++) {
        char *o = (char *)out + i * es;
        if (t == CGLOO_BOOL) {
            *o = (char)ref_bool(op, a, b, i);
            continue;
        }
        if (dtype_is_complex(t)) {
            ref_complex(op, t, a, b, i, o);
            continue;
        }
        if (!dtype_is_float(t)) {
            uint64_t v = ref_int(op, t, a, b, i);
            memcpy(o, &v, es);
            continue;
        }
        double v = ref_float(op, t, a, b, i);
        uint16_t h = t == CGLOO_FLOAT16 ? ref_to_half(v) : ref_to_bf16(v);
        float f = (float)v;
        memcpy(o,
               t == CGLOO_FLOAT32   ? (void *)&f
               : t == CGLOO_FLOAT64 ? (void *)&v
                                    : (void *)&h,
               es);
    }
}

static int elem_is_nan(cgloo_dtype t, const void *p)
{
    uint16_t h;
    switch (t) {
    case CGLOO_FLOAT16:
        memcpy(&h, p, 2);
        return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    case CGLOO_BFLOAT16:
        memcpy(&h, p, 2);
        return (h & 0x7f80) == 0x7f80 && (h & 0x7f);
    case CGLOO_FLOAT32:
        return isnan(*(const float *)p);
    case CGLOO_FLOAT64:
        return isnan(*(const double *)p);
    default:
        return 0;
    }
}

/* same_result: bit-equal, or both NaN. Prints the first difference. Complex elements are
 * compared part by part (the index printed is a part's). */
static int same_result(cgloo_op op, cgloo_dtype t, const void *got, const void *want, const void *a,
                       const void *b, size_t n)
{
    if (dtype_is_complex(t))
        return same_result(op, t == CGLOO_COMPLEX64 ? CGLOO_FLOAT32 : CGLOO_FLOAT64, got, want, a,
                           b, 2 * n);
    size_t es = cgloo_dtype_size(t);
    for (size_t i = 0; i < n; i++) {
        const char *g = (const char *)got + i * es, *w = (const char *)want + i * es;
        if (memcmp(g, w, es) == 0 || (elem_is_nan(t, g) && elem_is_nan(t, w)))
            continue;
        uint64_t gv = 0, wv = 0, av = 0, bv = 0;
        memcpy(&gv, g, es);
        memcpy(&wv, w, es);
        memcpy(&av, (const char *)a + i * es, es);
        memcpy(&bv, (const char *)b + i * es, es);
        fprintf(stderr, "%s %s [%zu/%zu]: %#llx op %#llx gave %#llx, want %#llx\n",
                cgloo_op_name(op), cgloo_dtype_name(t), i, n, (unsigned long long)av,
                (unsigned long long)bv, (unsigned long long)gv, (unsigned long long)wv);
        return 0;
    }
    return 1;
}

/* check_kernel runs `k` on a copy of a (at element offset `off` in its buffer) and b, and
 * compares with the reference. Returns 1 when equal. */
static int check_kernel(cgloo__reduce_kernel k, cgloo_op op, cgloo_dtype t, const void *a,
                        const void *b, size_t n, size_t off)
{
    size_t es = cgloo_dtype_size(t), bytes = (n + off) * es + 1;
    char *x = malloc(bytes), *y = malloc(bytes), *want = malloc(bytes);
    CHECK(x && y && want);
    memcpy(x + off * es, a, n * es);
    memcpy(y + off * es, b, n * es);
    ref_apply(op, t, a, b, want, n);
    k(x + off * es, y + off * es, n);
    int ok = same_result(op, t, x + off * es, want, a, b, n);
    free(x);
    free(y);
    free(want);
    return ok;
}

static void fill_random(void *buf, size_t n, cgloo_dtype t)
{
    if (dtype_is_complex(t)) { /* random parts: the float patterns below */
        fill_random(buf, 2 * n, t == CGLOO_COMPLEX64 ? CGLOO_FLOAT32 : CGLOO_FLOAT64);
        return;
    }
    size_t es = cgloo_dtype_size(t);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = rng_next();
        /* Make floats of moderate magnitude common, so that not every product overflows. */
        if (t == CGLOO_FLOAT32 && (v & 3))
            v = (v & 0x807fffffu) | (uint64_t)(100 + (v >> 40) % 56) << 23;
        if (t == CGLOO_FLOAT64 && (v & 3))
            v = (v & 0x800fffffffffffffu) | (uint64_t)(900 + (v >> 40) % 248) << 52;
        if (t == CGLOO_BFLOAT16 && (v & 3))
            v = (v & 0x807fu) | (uint64_t)(100 + (v >> 40) % 56) << 7;
        memcpy((char *)buf + i * es, &v, es);
    }
}

/* ---- the checks, run for a given kernel source ------------------------------------------- */

typedef cgloo__reduce_kernel (*kernel_source)(cgloo_op op, cgloo_dtype t, void *arg);

static cgloo__reduce_kernel from_dispatch(cgloo_op op, cgloo_dtype t, void *arg)
{
    (void)arg;
    return cgloo__reduce_kernel_for(op, t);
}

static cgloo__reduce_kernel from_isa(cgloo_op op, cgloo_dtype t, void *arg)
{
    return cgloo__reduce_kernel_isa(op, t, *(cgloo__reduce_isa *)arg);
}

/* check_inputs: coll_util's inputs (two ranks) for every pair, count and offset. */
static void check_inputs(kernel_source src, void *arg)
{
    uint64_t a[2000], b[2000]; /* 1000 elements of up to 16 bytes */
    for (size_t o = 0; o < CGLOO_ARRAY_LEN(all_ops); o++)
        for (size_t d = 0; d < CGLOO_ARRAY_LEN(all_dtypes); d++) {
            cgloo_op op = all_ops[o];
            cgloo_dtype t = all_dtypes[d];
            cgloo__reduce_kernel k = src(op, t, arg);
            CHECK((k != NULL) == op_defined(op, t));
            if (!k)
                continue;
            fill_input(a, 1000, t, op, 0);
            fill_input(b, 1000, t, op, 1);
            for (size_t c = 0; c < CGLOO_ARRAY_LEN(counts); c++)
                for (size_t off = 0; off < 2; off++) {
                    CHECK(check_kernel(k, op, t, a, b, counts[c], off));
                    /* and coll_util's own reference */
                    size_t es = cgloo_dtype_size(t);
                    uint64_t xbuf[2002]; /* aligned for every dtype */
                    char *x = (char *)xbuf;
                    memcpy(x + off * es, a, counts[c] * es);
                    k(x + off * es, b, counts[c]);
                    CHECK(check_reduced(x + off * es, counts[c], t, op, 2, 0));
                }
        }
}

/* check_random: random bit patterns (NaN, infinity, subnormals, huge and tiny values). */
static void check_random(kernel_source src, void *arg)
{
    enum { n = 4099 };
    static uint64_t a[2 * n], b[2 * n]; /* up to 16 bytes an element */
    for (size_t o = 0; o < CGLOO_ARRAY_LEN(all_ops); o++)
        for (size_t d = 0; d < CGLOO_ARRAY_LEN(all_dtypes); d++) {
            cgloo__reduce_kernel k = src(all_ops[o], all_dtypes[d], arg);
            if (!k)
                continue;
            for (int round = 0; round < 4; round++) {
                fill_random(a, n, all_dtypes[d]);
                fill_random(b, n, all_dtypes[d]);
                CHECK(check_kernel(k, all_ops[o], all_dtypes[d], a, b, n - round, round & 1));
            }
        }
}

/* One edge case: a (op) b in dtype t must be `want` (bit patterns, as uint64). */
typedef struct edge {
    cgloo_op op;
    cgloo_dtype t;
    uint64_t a, b, want;
} edge;

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint64_t f64_bits(double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    return u;
}

static const edge edges[] = {
    /* integers wrap at the limits */
    {CGLOO_SUM, CGLOO_INT8, 127, 1, 0x80},
    {CGLOO_SUM, CGLOO_INT8, 0x80, 0xff, 127},
    {CGLOO_PRODUCT, CGLOO_INT8, 0x80, 0xff, 0x80},
    {CGLOO_PRODUCT, CGLOO_INT8, 16, 16, 0},
    {CGLOO_MIN, CGLOO_INT8, 0x80, 127, 0x80},
    {CGLOO_MAX, CGLOO_INT8, 0x80, 127, 127},
    {CGLOO_SUM, CGLOO_UINT8, 255, 1, 0},
    {CGLOO_PRODUCT, CGLOO_UINT8, 255, 255, 1},
    {CGLOO_MAX, CGLOO_UINT8, 255, 1, 255},
    {CGLOO_SUM, CGLOO_INT32, 0x7fffffff, 1, 0x80000000},
    {CGLOO_PRODUCT, CGLOO_INT32, 0x80000000, 0xffffffff, 0x80000000},
    {CGLOO_PRODUCT, CGLOO_INT32, 0x10000, 0x10000, 0},
    {CGLOO_MIN, CGLOO_INT32, 0x80000000, 0x7fffffff, 0x80000000},
    {CGLOO_SUM, CGLOO_UINT32, 0xffffffff, 2, 1},
    {CGLOO_MAX, CGLOO_UINT32, 0xffffffff, 0, 0xffffffff},
    {CGLOO_SUM, CGLOO_INT64, 0x7fffffffffffffff, 1, 0x8000000000000000},
    {CGLOO_PRODUCT, CGLOO_INT64, 0x8000000000000000, 0xffffffffffffffff, 0x8000000000000000},
    {CGLOO_MIN, CGLOO_INT64, 0x8000000000000000, 0x7fffffffffffffff, 0x8000000000000000},
    {CGLOO_SUM, CGLOO_UINT64, 0xffffffffffffffff, 1, 0},
    {CGLOO_PRODUCT, CGLOO_UINT64, 0xffffffffffffffff, 0xffffffffffffffff, 1},
    {CGLOO_MIN, CGLOO_UINT64, 0xffffffffffffffff, 1, 1},
    {CGLOO_BXOR, CGLOO_UINT64, 0xf0f0f0f0f0f0f0f0, 0xffffffffffffffff, 0x0f0f0f0f0f0f0f0f},
    {CGLOO_BAND, CGLOO_INT8, 0xf0, 0x3c, 0x30},
    {CGLOO_BOR, CGLOO_INT32, 0xf0000000, 0x3c, 0xf000003c},
    {CGLOO_SUM, CGLOO_INT16, 0x7fff, 1, 0x8000},
    {CGLOO_SUM, CGLOO_INT16, 0x8000, 0xffff, 0x7fff},
    {CGLOO_PRODUCT, CGLOO_INT16, 0x8000, 0xffff, 0x8000},
    {CGLOO_PRODUCT, CGLOO_INT16, 0x100, 0x100, 0},
    {CGLOO_MIN, CGLOO_INT16, 0x8000, 0x7fff, 0x8000},
    {CGLOO_MAX, CGLOO_INT16, 0x8000, 0x7fff, 0x7fff},
    {CGLOO_BXOR, CGLOO_INT16, 0xf0f0, 0xffff, 0x0f0f},
    {CGLOO_SUM, CGLOO_UINT16, 0xffff, 2, 1},
    {CGLOO_PRODUCT, CGLOO_UINT16, 0xffff, 0xffff, 1},
    {CGLOO_MIN, CGLOO_UINT16, 0x8000, 0x7fff, 0x7fff}, /* compared unsigned */
    {CGLOO_MAX, CGLOO_UINT16, 0xffff, 0, 0xffff},
    {CGLOO_BAND, CGLOO_UINT16, 0xff00, 0x0ff0, 0x0f00},
    {CGLOO_BOR, CGLOO_UINT16, 0xff00, 0x00f0, 0xfff0},
    /* bool: any non-zero byte is true, results are 0 or 1, never the bytes' arithmetic */
    {CGLOO_SUM, CGLOO_BOOL, 1, 1, 1},
    {CGLOO_SUM, CGLOO_BOOL, 0, 0, 0},
    {CGLOO_SUM, CGLOO_BOOL, 2, 0, 1},
    {CGLOO_SUM, CGLOO_BOOL, 0x80, 0x80, 1},
    {CGLOO_PRODUCT, CGLOO_BOOL, 2, 4, 1},
    {CGLOO_PRODUCT, CGLOO_BOOL, 0xff, 0, 0},
    {CGLOO_MIN, CGLOO_BOOL, 2, 1, 1},
    {CGLOO_MIN, CGLOO_BOOL, 0, 7, 0},
    {CGLOO_MAX, CGLOO_BOOL, 0, 0x10, 1},
    {CGLOO_MAX, CGLOO_BOOL, 0, 0, 0},
    {CGLOO_BAND, CGLOO_BOOL, 1, 2, 1},
    {CGLOO_BAND, CGLOO_BOOL, 0, 0xff, 0},
    {CGLOO_BOR, CGLOO_BOOL, 0x40, 0, 1},
    {CGLOO_BOR, CGLOO_BOOL, 0, 0, 0},
    {CGLOO_BXOR, CGLOO_BOOL, 1, 2, 0},
    {CGLOO_BXOR, CGLOO_BOOL, 3, 3, 0},
    {CGLOO_BXOR, CGLOO_BOOL, 0, 0xfe, 1},
    /* float16: ties to even, overflow, subnormals, NaN, signed zeros */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x3c00, 0x1000, 0x3c00},     /* 1 + 2^-11: tie, down to even */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x3c01, 0x1000, 0x3c02},     /* 1+2^-10 + 2^-11: tie, up to even */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x3c00, 0x1001, 0x3c01},     /* just above the tie */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x7bff, 0x4800, 0x7bff},     /* 65504 + 8 stays 65504 */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x7bff, 0x4c00, 0x7c00},     /* 65504 + 16 = 65520: tie, to inf */
    {CGLOO_PRODUCT, CGLOO_FLOAT16, 0x7bff, 0xc000, 0xfc00}, /* -131008: -inf */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x0001, 0x0001, 0x0002},     /* subnormals add exactly */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x03ff, 0x0001, 0x0400},     /* into the normals */
    {CGLOO_PRODUCT, CGLOO_FLOAT16, 0x0400, 0x3800, 0x0200}, /* 2^-14 * 0.5 = 2^-15 */
    {CGLOO_PRODUCT, CGLOO_FLOAT16, 0x0001, 0x3800, 0x0000}, /* 2^-25: tie, to 0 */
    {CGLOO_PRODUCT, CGLOO_FLOAT16, 0x0003, 0x3800, 0x0002}, /* 1.5 units: tie, to 2 */
    {CGLOO_PRODUCT, CGLOO_FLOAT16, 0x0001, 0x3a00, 0x0001}, /* 0.75 units: up to 1 */
    {CGLOO_PRODUCT, CGLOO_FLOAT16, 0x8001, 0x3400, 0x8000}, /* -0.25 units: -0 */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x7c00, 0xfc00, 0x7e00},     /* inf - inf: NaN */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x7e00, 0x3c00, 0x7e00},
    {CGLOO_MIN, CGLOO_FLOAT16, 0x7e00, 0x3c00, 0x7e00},
    {CGLOO_MIN, CGLOO_FLOAT16, 0x3c00, 0x7e00, 0x7e00},
    {CGLOO_MAX, CGLOO_FLOAT16, 0x3c00, 0xfe00, 0x7e00},
    {CGLOO_MIN, CGLOO_FLOAT16, 0x0000, 0x8000, 0x8000},
    {CGLOO_MIN, CGLOO_FLOAT16, 0x8000, 0x0000, 0x8000},
    {CGLOO_MAX, CGLOO_FLOAT16, 0x0000, 0x8000, 0x0000},
    {CGLOO_MAX, CGLOO_FLOAT16, 0x8000, 0x0000, 0x0000},
    {CGLOO_MIN, CGLOO_FLOAT16, 0xfc00, 0x7bff, 0xfc00},
    {CGLOO_SUM, CGLOO_FLOAT16, 0x8000, 0x8000, 0x8000}, /* -0 + -0 = -0 */
    {CGLOO_SUM, CGLOO_FLOAT16, 0x8000, 0x0000, 0x0000},
    /* bfloat16 */
    {CGLOO_SUM, CGLOO_BFLOAT16, 0x3f80, 0x3b80, 0x3f80},     /* 1 + 2^-8: tie, to even */
    {CGLOO_SUM, CGLOO_BFLOAT16, 0x3f81, 0x3b80, 0x3f82},     /* tie, up to even */
    {CGLOO_SUM, CGLOO_BFLOAT16, 0x7f7f, 0x7f7f, 0x7f80},     /* overflow: inf */
    {CGLOO_PRODUCT, CGLOO_BFLOAT16, 0x0080, 0x3f00, 0x0040}, /* 2^-126 / 2: subnormal */
    {CGLOO_PRODUCT, CGLOO_BFLOAT16, 0x0001, 0x3f00, 0x0000}, /* half the smallest: to 0 */
    {CGLOO_PRODUCT, CGLOO_BFLOAT16, 0x0003, 0x3f00, 0x0002}, /* 1.5: tie, to 2 */
    {CGLOO_SUM, CGLOO_BFLOAT16, 0x7fc0, 0x3f80, 0x7fc0},
    {CGLOO_MAX, CGLOO_BFLOAT16, 0x3f80, 0xffc0, 0x7fc0},
    {CGLOO_MIN, CGLOO_BFLOAT16, 0x0000, 0x8000, 0x8000},
    {CGLOO_MAX, CGLOO_BFLOAT16, 0x8000, 0x0000, 0x0000},
};

/* float32 and float64 edge cases, as values (converted to bit patterns when run). */
typedef struct float_edge {
    cgloo_op op;
    cgloo_dtype t;
    double a, b, want;
} float_edge;

static const float_edge float_edges[] = {
    {CGLOO_SUM, CGLOO_FLOAT32, 3.0e38f, 3.0e38f, INFINITY},
    {CGLOO_SUM, CGLOO_FLOAT32, NAN, 1.0f, NAN},
    {CGLOO_PRODUCT, CGLOO_FLOAT32, 0x1p-149f, 0.5f, 0.0f},
    {CGLOO_MIN, CGLOO_FLOAT32, NAN, 1.0f, NAN},
    {CGLOO_MIN, CGLOO_FLOAT32, 1.0f, NAN, NAN},
    {CGLOO_MAX, CGLOO_FLOAT32, NAN, -INFINITY, NAN},
    {CGLOO_MAX, CGLOO_FLOAT32, -INFINITY, NAN, NAN},
    {CGLOO_MIN, CGLOO_FLOAT32, 0.0f, -0.0f, -0.0f},
    {CGLOO_MIN, CGLOO_FLOAT32, -0.0f, 0.0f, -0.0f},
    {CGLOO_MAX, CGLOO_FLOAT32, 0.0f, -0.0f, 0.0f},
    {CGLOO_MAX, CGLOO_FLOAT32, -0.0f, 0.0f, 0.0f},
    {CGLOO_MIN, CGLOO_FLOAT32, -INFINITY, 1.0f, -INFINITY},
    {CGLOO_SUM, CGLOO_FLOAT64, 1.7e308, 1.7e308, INFINITY},
    {CGLOO_SUM, CGLOO_FLOAT64, -0.0, -0.0, -0.0},
    {CGLOO_PRODUCT, CGLOO_FLOAT64, INFINITY, 0.0, NAN},
    {CGLOO_MIN, CGLOO_FLOAT64, NAN, 1.0, NAN},
    {CGLOO_MIN, CGLOO_FLOAT64, 1.0, NAN, NAN},
    {CGLOO_MAX, CGLOO_FLOAT64, NAN, 1.0, NAN},
    {CGLOO_MAX, CGLOO_FLOAT64, 1.0, NAN, NAN},
    {CGLOO_MIN, CGLOO_FLOAT64, 0.0, -0.0, -0.0},
    {CGLOO_MAX, CGLOO_FLOAT64, -0.0, 0.0, 0.0},
};

/* complex64 and complex128 edge cases, as (real, imaginary) values. */
typedef struct complex_edge {
    cgloo_op op;
    cgloo_dtype t;
    double a[2], b[2], want[2];
} complex_edge;

static const complex_edge complex_edges[] = {
    {CGLOO_PRODUCT, CGLOO_COMPLEX64, {1, 2}, {3, 4}, {-5, 10}},
    {CGLOO_PRODUCT, CGLOO_COMPLEX64, {0, 1}, {0, 1}, {-1, 0}},
    {CGLOO_SUM, CGLOO_COMPLEX64, {1, -2}, {0.5, 2}, {1.5, 0}},
    {CGLOO_SUM, CGLOO_COMPLEX64, {-0.0, -0.0}, {-0.0, -0.0}, {-0.0, -0.0}},
    /* ac rounds to bd (and bd to ac below), so the real part is 0; a fused multiply-add that
     * skips either rounding gives 2^-24 or -2^-24 */
    {CGLOO_PRODUCT,
     CGLOO_COMPLEX64,
     {1 + 0x1p-12, 1 + 0x1p-11},
     {1 + 0x1p-12, 1},
     {0, 2 + 0x1p-10}},
    {CGLOO_PRODUCT,
     CGLOO_COMPLEX64,
     {1 + 0x1p-11, 1 + 0x1p-12},
     {1, 1 + 0x1p-12},
     {0, 2 + 0x1p-10}},
    /* no recovery of infinities (C's Annex G): inf * 1 has the imaginary part inf * 0 = NaN */
    {CGLOO_PRODUCT, CGLOO_COMPLEX64, {INFINITY, 0}, {1, 0}, {INFINITY, NAN}},
    {CGLOO_PRODUCT, CGLOO_COMPLEX64, {1e30, 1e30}, {1e30, -1e30}, {INFINITY, NAN}},
    {CGLOO_SUM, CGLOO_COMPLEX64, {NAN, 1}, {1, 1}, {NAN, 2}},
    {CGLOO_PRODUCT, CGLOO_COMPLEX128, {1, 2}, {3, 4}, {-5, 10}},
    {CGLOO_PRODUCT, CGLOO_COMPLEX128, {0, -1}, {0, 1}, {1, 0}},
    {CGLOO_SUM, CGLOO_COMPLEX128, {1e308, 1}, {1e308, -1}, {INFINITY, 0}},
    {CGLOO_PRODUCT,
     CGLOO_COMPLEX128,
     {1 + 0x1p-27, 1 + 0x1p-26},
     {1 + 0x1p-27, 1},
     {0, 2 + 0x1p-25}},
    {CGLOO_PRODUCT,
     CGLOO_COMPLEX128,
     {1 + 0x1p-26, 1 + 0x1p-27},
     {1, 1 + 0x1p-27},
     {0, 2 + 0x1p-25}},
    {CGLOO_PRODUCT, CGLOO_COMPLEX128, {INFINITY, 0}, {0, 1}, {NAN, INFINITY}},
};

/* check_case: a (op) b in dtype t must be `want` (one element each). The case runs at every
 * fifth position of a 37-element buffer, so it meets the vector body and the tail. */
static void check_case(kernel_source src, void *arg, cgloo_op op, cgloo_dtype t, const void *ea,
                       const void *eb, const void *ewant)
{
    enum { n = 37 };
    size_t es = cgloo_dtype_size(t);
    cgloo__reduce_kernel k = src(op, t, arg);
    CHECK(k != NULL);
    for (size_t pos = 0; pos < n; pos += 5) {
        uint64_t a[2 * n], b[2 * n], want[2 * n]; /* up to 16 bytes an element */
        fill_input(a, n, t, op, 0);               /* ordinary neighbours */
        fill_input(b, n, t, op, 1);
        memcpy((char *)a + pos * es, ea, es);
        memcpy((char *)b + pos * es, eb, es);
        /* the reference must agree with the hand-written answer... */
        ref_apply(op, t, a, b, want, n);
        CHECK(same_result(op, t, (char *)want + pos * es, ewant, ea, eb, 1));
        /* ...and the kernel with both, at every position */
        CHECK(check_kernel(k, op, t, a, b, n, pos & 1));
    }
}

static void check_edge(kernel_source src, void *arg, const edge *c)
{
    check_case(src, arg, c->op, c->t, &c->a, &c->b, &c->want); /* the low bytes: little-endian */
}

/* complex_bytes stores the parts v as one element of complex dtype t. */
static void complex_bytes(cgloo_dtype t, const double v[2], void *out)
{
    float f[2] = {(float)v[0], (float)v[1]};
    memcpy(out, t == CGLOO_COMPLEX64 ? (const void *)f : (const void *)v, cgloo_dtype_size(t));
}

static void check_complex_edge(kernel_source src, void *arg, const complex_edge *c)
{
    double a[2], b[2], want[2]; /* room for either dtype's element */
    complex_bytes(c->t, c->a, a);
    complex_bytes(c->t, c->b, b);
    complex_bytes(c->t, c->want, want);
    check_case(src, arg, c->op, c->t, a, b, want);
}

static uint64_t float_bits(cgloo_dtype t, double v)
{
    return t == CGLOO_FLOAT32 ? f32_bits((float)v) : f64_bits(v);
}

static void check_edges(kernel_source src, void *arg)
{
    for (size_t e = 0; e < CGLOO_ARRAY_LEN(edges); e++)
        check_edge(src, arg, &edges[e]);
    for (size_t e = 0; e < CGLOO_ARRAY_LEN(float_edges); e++) {
        const float_edge *f = &float_edges[e];
        edge c = {f->op, f->t, float_bits(f->t, f->a), float_bits(f->t, f->b),
                  float_bits(f->t, f->want)};
        check_edge(src, arg, &c);
    }
    for (size_t e = 0; e < CGLOO_ARRAY_LEN(complex_edges); e++)
        check_complex_edge(src, arg, &complex_edges[e]);
}

static void check_all(kernel_source src, void *arg)
{
    check_inputs(src, arg);
    check_edges(src, arg);
    check_random(src, arg);
}

/* ---- the tests ----------------------------------------------------------------------------- */

static void test_dispatched(void)
{
    fprintf(stderr, "dispatched kernels: %s\n", cgloo__reduce_isa_name(cgloo__reduce_isa_active()));
    check_all(from_dispatch, NULL);
}

static void test_scalar_env(void)
{
    setenv("CGLOO_KERNELS", "scalar", 1); /* before the first call: dispatch reads it once */
    CHECK(cgloo__reduce_isa_active() == CGLOO_REDUCE_PORTABLE);
    CHECK(cgloo__reduce_kernel_for(CGLOO_SUM, CGLOO_FLOAT32) ==
          cgloo__reduce_kernel_isa(CGLOO_SUM, CGLOO_FLOAT32, CGLOO_REDUCE_PORTABLE));
    check_all(from_dispatch, NULL);
}

static void test_every_isa(void)
{
    int have = 0;
    for (int i = 0; i < CGLOO_REDUCE_ISA_COUNT; i++) {
        cgloo__reduce_isa isa = (cgloo__reduce_isa)i;
        if (!cgloo__reduce_kernel_isa(CGLOO_SUM, CGLOO_FLOAT32, isa))
            continue;
        fprintf(stderr, "checking %s\n", cgloo__reduce_isa_name(isa));
        have++;
        check_all(from_isa, &isa);
    }
    CHECK(have >= 1);
}

/* check_rounding converts floats at and next to the midpoint of two neighbouring 16-bit
 * values x < y (both finite, same sign, y may be infinity's encoding) and compares with the
 * reference rounding. */
static void check_rounding(double x, double y, uint16_t (*conv)(float), int p, int emin,
                           uint16_t (*encode)(double))
{
    float mid = (float)((x + y) / 2); /* exact in float32 */
    float probes[] = {mid, nextafterf(mid, -INFINITY), nextafterf(mid, INFINITY), (float)x};
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(probes); i++) {
        uint16_t got = conv(probes[i]), want = encode(ref_round(probes[i], p, emin, 127));
        if (p == 11) /* binary16's exponents stop at 15 */
            want = encode(ref_round(probes[i], p, emin, 15));
        if (got != want)
            fprintf(stderr, "float %a: got %#x, want %#x\n", (double)probes[i], got, want);
        CHECK(got == want);
    }
}

/* The half conversions on all 65536 bit patterns: the round trip is the identity (NaNs stay
 * NaN), and float32 values at, below and above every midpoint round as the reference does. */
static void test_half_conversions(void)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = cgloo__half_to_float((uint16_t)h);
        double r = ref_from_half((uint16_t)h);
        CHECK(isnan(r) ? isnan(f) : f32_bits(f) == f32_bits((float)r));
        uint16_t back = cgloo__float_to_half(f);
        CHECK(isnan(r) ? elem_is_nan(CGLOO_FLOAT16, &back) : back == h);
        if ((h & 0x7fff) < 0x7c00) { /* finite: the midpoint to the next magnitude */
            double next =
                (h & 0x7fff) == 0x7bff ? copysign(65536, r) : ref_from_half((uint16_t)(h + 1));
            check_rounding(r, next, cgloo__float_to_half, 11, -14, ref_to_half);
        }
    }
}

/* bfloat16: the same for all 65536 bit patterns. */
static void test_bf16_conversions(void)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = cgloo__bf16_to_float((uint16_t)h);
        uint16_t back = cgloo__float_to_bf16(f);
        CHECK(isnan(f) ? elem_is_nan(CGLOO_BFLOAT16, &back) : back == h);
        if ((h & 0x7fff) < 0x7f80) {
            double next = (h & 0x7fff) == 0x7f7f ? copysign(ldexp(1, 128), f)
                                                 : ref_from_bf16((uint16_t)(h + 1));
            check_rounding(f, next, cgloo__float_to_bf16, 8, -126, ref_to_bf16);
        }
    }
}

static void test_invalid(void)
{
    float x[4] = {1, 2, 3, 4}, y[4] = {1, 1, 1, 1};
    for (size_t o = 0; o < CGLOO_ARRAY_LEN(all_ops); o++)
        for (size_t d = 0; d < CGLOO_ARRAY_LEN(all_dtypes); d++) {
            int valid = op_defined(all_ops[o], all_dtypes[d]);
            CHECK((cgloo__reduce_kernel_for(all_ops[o], all_dtypes[d]) != NULL) == valid);
            CHECK_STATUS(cgloo_reduce_local(x, y, 0, all_dtypes[d], all_ops[o]),
                         valid ? CGLOO_OK : CGLOO_EINVAL);
        }
    CHECK(cgloo__reduce_kernel_for(CGLOO_OP_COUNT, CGLOO_INT32) == NULL);
    CHECK(cgloo__reduce_kernel_for(CGLOO_SUM, CGLOO_DTYPE_COUNT) == NULL);
    CHECK(cgloo__reduce_kernel_for((cgloo_op)-1, CGLOO_INT32) == NULL);
    CHECK(cgloo__reduce_kernel_for(CGLOO_SUM, (cgloo_dtype)-1) == NULL);
    CHECK(cgloo__reduce_kernel_isa(CGLOO_SUM, CGLOO_INT32, CGLOO_REDUCE_ISA_COUNT) == NULL);
    CHECK(cgloo__reduce_kernel_isa(CGLOO_BAND, CGLOO_FLOAT16, CGLOO_REDUCE_PORTABLE) == NULL);
    CHECK(cgloo__reduce_kernel_isa(CGLOO_MAX, CGLOO_COMPLEX128, CGLOO_REDUCE_PORTABLE) == NULL);
    CHECK(cgloo__reduce_isa_name(CGLOO_REDUCE_ISA_COUNT) == NULL);
    CHECK_STATUS(cgloo_reduce_local(x, y, 4, CGLOO_FLOAT32, CGLOO_BXOR), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_local(x, y, 2, CGLOO_COMPLEX64, CGLOO_MIN), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_local(x, y, 2, CGLOO_COMPLEX64, CGLOO_MAX), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_local(x, y, 2, CGLOO_COMPLEX64, CGLOO_BOR), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_local(x, y, 4, CGLOO_DTYPE_COUNT, CGLOO_SUM), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_local(x, y, 4, CGLOO_FLOAT32, CGLOO_OP_COUNT), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_local(NULL, y, 4, CGLOO_FLOAT32, CGLOO_SUM), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_local(x, NULL, 4, CGLOO_FLOAT32, CGLOO_SUM), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_reduce_local(NULL, NULL, 0, CGLOO_FLOAT32, CGLOO_SUM), CGLOO_OK);
    CHECK(x[0] == 1 && x[3] == 4); /* failed calls wrote nothing */
    CHECK_OK(cgloo_reduce_local(x, y, 4, CGLOO_FLOAT32, CGLOO_SUM));
    CHECK(x[0] == 2 && x[1] == 3 && x[2] == 4 && x[3] == 5);
}

/* Every dtype's size and name, and the values the ABI fixes: dtypes are appended. */
static void test_names(void)
{
    static const struct {
        cgloo_dtype t;
        size_t size;
        const char *name;
    } want[] = {
        {CGLOO_INT8, 1, "int8"},
        {CGLOO_UINT8, 1, "uint8"},
        {CGLOO_INT32, 4, "int32"},
        {CGLOO_UINT32, 4, "uint32"},
        {CGLOO_INT64, 8, "int64"},
        {CGLOO_UINT64, 8, "uint64"},
        {CGLOO_FLOAT16, 2, "float16"},
        {CGLOO_BFLOAT16, 2, "bfloat16"},
        {CGLOO_FLOAT32, 4, "float32"},
        {CGLOO_FLOAT64, 8, "float64"},
        {CGLOO_BOOL, 1, "bool"},
        {CGLOO_INT16, 2, "int16"},
        {CGLOO_UINT16, 2, "uint16"},
        {CGLOO_COMPLEX64, 8, "complex64"},
        {CGLOO_COMPLEX128, 16, "complex128"},
    };
    CHECK(CGLOO_ARRAY_LEN(want) == CGLOO_DTYPE_COUNT);
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(want); i++) {
        CHECK((size_t)want[i].t == i);
        CHECK(cgloo_dtype_size(want[i].t) == want[i].size);
        CHECK(strcmp(cgloo_dtype_name(want[i].t), want[i].name) == 0);
    }
    CHECK(cgloo_dtype_size(CGLOO_DTYPE_COUNT) == 0 && cgloo_dtype_name(CGLOO_DTYPE_COUNT) == NULL);
    CHECK(sizeof(float _Complex) == 8 && sizeof(double _Complex) == 16);
}

/* The public call on C's own complex types, whose layout complex64 and complex128 share. */
static void test_complex_layout(void)
{
    float _Complex a[3] = {1 + 2 * I, 3, -1 * I}, b[3] = {3 + 4 * I, 2 * I, -1 * I};
    CHECK_OK(cgloo_reduce_local(a, b, 3, CGLOO_COMPLEX64, CGLOO_PRODUCT));
    CHECK(crealf(a[0]) == -5 && cimagf(a[0]) == 10);
    CHECK(crealf(a[1]) == 0 && cimagf(a[1]) == 6);
    CHECK(crealf(a[2]) == -1 && cimagf(a[2]) == 0);
    double _Complex c[2] = {1.5 - 2 * I, 1e300}, d[2] = {0.5 + 2 * I, -1e300};
    CHECK_OK(cgloo_reduce_local(c, d, 2, CGLOO_COMPLEX128, CGLOO_SUM));
    CHECK(creal(c[0]) == 2 && cimag(c[0]) == 0 && creal(c[1]) == 0 && cimag(c[1]) == 0);
}

/* Many threads make the first call at once: every one gets the same kernel. */
static void race_rank(int rank, int size, void *arg)
{
    (void)size;
    cgloo__reduce_kernel *seen = arg;
    seen[rank] = cgloo__reduce_kernel_for(CGLOO_SUM, CGLOO_FLOAT16);
    int32_t a[100], b[100];
    for (int i = 0; i < 100; i++) {
        a[i] = i;
        b[i] = rank;
    }
    CHECK_OK(cgloo_reduce_local(a, b, 100, CGLOO_INT32, CGLOO_SUM));
    for (int i = 0; i < 100; i++)
        CHECK(a[i] == i + rank);
}

static void test_first_call_race(void)
{
    cgloo__reduce_kernel seen[16];
    run_ranks(16, race_rank, seen);
    for (int i = 0; i < 16; i++)
        CHECK(seen[i] != NULL && seen[i] == seen[0]);
}

static const test_case tests[] = {
    {"dispatched", test_dispatched, 60},
    {"scalar_env", test_scalar_env, 60},
    {"every_isa", test_every_isa, 60},
    {"half_conversions", test_half_conversions, 60},
    {"bf16_conversions", test_bf16_conversions, 60},
    {"invalid", test_invalid, 10},
    {"names", test_names, 10},
    {"complex_layout", test_complex_layout, 10},
    {"first_call_race", test_first_call_race, 10},
};

TEST_MAIN(tests)
