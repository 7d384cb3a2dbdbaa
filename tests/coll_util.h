/*
 * Helpers for collective tests: inputs whose reductions are exact in every dtype (small
 * integers, so float sums do not depend on the order of operations), a serial reference, and
 * comparison. Values live as tvals in the test (integers, or Gaussian integers for the complex
 * dtypes) and are converted to and from each dtype.
 */
#ifndef CGLOO_TESTS_COLL_UTIL_H
#define CGLOO_TESTS_COLL_UTIL_H

#include "harness.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static const cgloo_dtype all_dtypes[] = {
    CGLOO_INT8,    CGLOO_UINT8,   CGLOO_INT16,  CGLOO_UINT16,    CGLOO_INT32,
    CGLOO_UINT32,  CGLOO_INT64,   CGLOO_UINT64, CGLOO_FLOAT16,   CGLOO_BFLOAT16,
    CGLOO_FLOAT32, CGLOO_FLOAT64, CGLOO_BOOL,   CGLOO_COMPLEX64, CGLOO_COMPLEX128};
static const cgloo_op all_ops[] = {CGLOO_SUM,  CGLOO_PRODUCT, CGLOO_MIN, CGLOO_MAX,
                                   CGLOO_BAND, CGLOO_BOR,     CGLOO_BXOR};

static inline int dtype_is_float(cgloo_dtype t)
{
    return t == CGLOO_FLOAT16 || t == CGLOO_BFLOAT16 || t == CGLOO_FLOAT32 || t == CGLOO_FLOAT64;
}

static inline int dtype_is_complex(cgloo_dtype t)
{
    return t == CGLOO_COMPLEX64 || t == CGLOO_COMPLEX128;
}

static inline int dtype_is_unsigned(cgloo_dtype t)
{
    return t == CGLOO_UINT8 || t == CGLOO_UINT16 || t == CGLOO_UINT32 || t == CGLOO_UINT64;
}

static inline int op_is_bitwise(cgloo_op op)
{
    return op == CGLOO_BAND || op == CGLOO_BOR || op == CGLOO_BXOR;
}

/* op_defined: the library has op for t. Floating-point dtypes have no bitwise ops, and complex
 * numbers no order either, so they have sum and product only. */
static inline int op_defined(cgloo_op op, cgloo_dtype t)
{
    if (dtype_is_complex(t))
        return op == CGLOO_SUM || op == CGLOO_PRODUCT;
    return !(dtype_is_float(t) && op_is_bitwise(op));
}

/* A value of the tests: an integer in re (im 0), or re + im i for the complex dtypes. */
typedef struct tval {
    double re, im;
} tval;

static inline tval tval_of(double re)
{
    return (tval){re, 0};
}

static inline int tval_equal(tval a, tval b)
{
    return a.re == b.re && a.im == b.im;
}

/* Integer-valued half and bfloat16 conversions (exact for |v| <= 2048 and 256). */
static inline uint16_t test_to_half(double v)
{
    if (v == 0)
        return 0;
    uint16_t sign = v < 0 ? 0x8000 : 0;
    double a = fabs(v);
    int e = 0;
    while (a >= 2) {
        a /= 2;
        e++;
    }
    uint16_t mant = (uint16_t)lround((a - 1) * 1024);
    return sign | (uint16_t)((e + 15) << 10) | mant;
}

static inline double test_from_half(uint16_t h)
{
    int e = (h >> 10) & 0x1f;
    double m = h & 0x3ff;
    double v = e == 0 ? m / 1024 * pow(2, -14) : (1 + m / 1024) * pow(2, e - 15);
    return h & 0x8000 ? -v : v;
}

static inline uint16_t test_to_bf16(double v)
{
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16); /* exact for the small integers the tests use */
}

static inline double test_from_bf16(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* store_value writes x (integer parts) as element i of buf. Integers wrap like C casts;
 * bool stores whether re is non-zero. */
static inline void store_value(void *buf, size_t i, cgloo_dtype t, tval x)
{
    double v = x.re, im = x.im;
    switch (t) {
    case CGLOO_INT8:
        ((int8_t *)buf)[i] = (int8_t)(int64_t)v;
        break;
    case CGLOO_UINT8:
        ((uint8_t *)buf)[i] = (uint8_t)(int64_t)v;
        break;
    case CGLOO_INT16:
        ((int16_t *)buf)[i] = (int16_t)(int64_t)v;
        break;
    case CGLOO_UINT16:
        ((uint16_t *)buf)[i] = (uint16_t)(int64_t)v;
        break;
    case CGLOO_INT32:
        ((int32_t *)buf)[i] = (int32_t)(int64_t)v;
        break;
    case CGLOO_UINT32:
        ((uint32_t *)buf)[i] = (uint32_t)(int64_t)v;
        break;
    case CGLOO_INT64:
        ((int64_t *)buf)[i] = (int64_t)v;
        break;
    case CGLOO_UINT64:
        ((uint64_t *)buf)[i] = (uint64_t)(int64_t)v;
        break;
    case CGLOO_FLOAT16:
        ((uint16_t *)buf)[i] = test_to_half(v);
        break;
    case CGLOO_BFLOAT16:
        ((uint16_t *)buf)[i] = test_to_bf16(v);
        break;
    case CGLOO_FLOAT32:
        ((float *)buf)[i] = (float)v;
        break;
    case CGLOO_FLOAT64:
        ((double *)buf)[i] = v;
        break;
    case CGLOO_BOOL:
        ((uint8_t *)buf)[i] = v != 0;
        break;
    case CGLOO_COMPLEX64:
        ((float *)buf)[2 * i] = (float)v;
        ((float *)buf)[2 * i + 1] = (float)im;
        break;
    case CGLOO_COMPLEX128:
        ((double *)buf)[2 * i] = v;
        ((double *)buf)[2 * i + 1] = im;
        break;
    default:
        break;
    }
}

static inline double load_real(const void *buf, size_t i, cgloo_dtype t)
{
    switch (t) {
    case CGLOO_INT8:
        return ((const int8_t *)buf)[i];
    case CGLOO_UINT8:
    case CGLOO_BOOL:
        return ((const uint8_t *)buf)[i];
    case CGLOO_INT16:
        return ((const int16_t *)buf)[i];
    case CGLOO_UINT16:
        return ((const uint16_t *)buf)[i];
    case CGLOO_INT32:
        return ((const int32_t *)buf)[i];
    case CGLOO_UINT32:
        return ((const uint32_t *)buf)[i];
    case CGLOO_INT64:
        return (double)((const int64_t *)buf)[i];
    case CGLOO_UINT64:
        return (double)((const uint64_t *)buf)[i];
    case CGLOO_FLOAT16:
        return test_from_half(((const uint16_t *)buf)[i]);
    case CGLOO_BFLOAT16:
        return test_from_bf16(((const uint16_t *)buf)[i]);
    case CGLOO_FLOAT32:
        return ((const float *)buf)[i];
    case CGLOO_FLOAT64:
        return ((const double *)buf)[i];
    default:
        return 0;
    }
}

/* load_value reads element i of buf; a bool byte as it is, so that a byte other than 0 and 1
 * differs from every reference. */
static inline tval load_value(const void *buf, size_t i, cgloo_dtype t)
{
    switch (t) {
    case CGLOO_COMPLEX64:
        return (tval){((const float *)buf)[2 * i], ((const float *)buf)[2 * i + 1]};
    case CGLOO_COMPLEX128:
        return (tval){((const double *)buf)[2 * i], ((const double *)buf)[2 * i + 1]};
    default:
        return tval_of(load_real(buf, i, t));
    }
}

/* bool_input: mostly true for the ops that are a logical and, mostly false for those that are
 * an or, so that neither result is the same everywhere. */
static inline double bool_input(cgloo_op op, size_t k)
{
    int rare = k % 11 == 0;
    if (op == CGLOO_PRODUCT || op == CGLOO_MIN || op == CGLOO_BAND)
        return !rare;
    return op == CGLOO_BXOR ? (double)(k % 2) : rare;
}

/* complex_input: products of units (1, i, -1, -i) and a rare 1 + i, whose real and imaginary
 * parts meet in every product; sums of small parts. */
static inline tval complex_input(cgloo_op op, int rank, size_t i, size_t k)
{
    static const double re[4] = {1, 0, -1, 0}, im[4] = {0, 1, 0, -1};
    if (op == CGLOO_PRODUCT)
        return k % 11 == 0 ? (tval){1, 1} : (tval){re[k % 4], im[k % 4]};
    return (tval){(double)(k % 17) - 8, (double)((i * 3 + (size_t)rank * 5) % 13) - 6};
}

/* input_value: the value rank `rank` contributes at element i for op. Products stay small
 * (factors of 1, -1 and a rare 2, or 1 + i), sums of up to 64 ranks stay below 2^10, so every
 * float result is exact; unsigned dtypes get non-negative values, bool 0 and 1. */
static inline tval input_value(cgloo_op op, cgloo_dtype t, int rank, size_t i)
{
    int unsigned_t = dtype_is_unsigned(t);
    size_t k = i * 7 + (size_t)rank * 13;
    if (t == CGLOO_BOOL)
        return tval_of(bool_input(op, k));
    if (dtype_is_complex(t))
        return complex_input(op, rank, i, k);
    if (op == CGLOO_PRODUCT)
        return tval_of(k % 11 == 0 ? 2 : (k % 3 == 0 && !unsigned_t) ? -1 : 1);
    int v = (int)(k % 17);
    return tval_of(unsigned_t || op_is_bitwise(op) ? v : v - 8);
}

static inline void fill_input(void *buf, size_t count, cgloo_dtype t, cgloo_op op, int rank)
{
    for (size_t i = 0; i < count; i++)
        store_value(buf, i, t, input_value(op, t, rank, i));
}

/* complex_reference: the sum or product over ranks 0..size-1, exact in doubles. */
static inline tval complex_reference(cgloo_op op, cgloo_dtype t, int size, size_t i)
{
    tval acc = input_value(op, t, 0, i);
    for (int r = 1; r < size; r++) {
        tval v = input_value(op, t, r, i);
        if (op == CGLOO_PRODUCT)
            acc = (tval){acc.re * v.re - acc.im * v.im, acc.re * v.im + acc.im * v.re};
        else
            acc = (tval){acc.re + v.re, acc.im + v.im};
    }
    return acc;
}

/* reference_value: element i of the op over ranks 0..size-1, computed in int64 or double and
 * then wrapped into the dtype by store_value/load_value. A bool's inputs are 0 and 1, so every
 * op but sum already gives its logical result, and a sum is true when it is non-zero. */
static inline tval reference_value(cgloo_op op, cgloo_dtype t, int size, size_t i)
{
    if (dtype_is_complex(t))
        return complex_reference(op, t, size, i);
    int64_t acc = (int64_t)input_value(op, t, 0, i).re;
    for (int r = 1; r < size; r++) {
        int64_t v = (int64_t)input_value(op, t, r, i).re;
        switch (op) {
        case CGLOO_SUM:
            acc += v;
            break;
        case CGLOO_PRODUCT:
            acc *= v;
            break;
        case CGLOO_MIN:
            acc = v < acc ? v : acc;
            break;
        case CGLOO_MAX:
            acc = v > acc ? v : acc;
            break;
        case CGLOO_BAND:
            acc &= v;
            break;
        case CGLOO_BOR:
            acc |= v;
            break;
        case CGLOO_BXOR:
            acc ^= v;
            break;
        default:
            break;
        }
    }
    return tval_of(t == CGLOO_BOOL ? acc != 0 : (double)acc);
}

/* check_reduced compares buf[0..count) with the reference of elements first..first+count. */
static inline int check_reduced(const void *buf, size_t count, cgloo_dtype t, cgloo_op op, int size,
                                size_t first)
{
    uint64_t tmp[2]; /* the largest element, complex128 */
    for (size_t i = 0; i < count; i++) {
        store_value(tmp, 0, t, reference_value(op, t, size, first + i)); /* wrap like the dtype */
        if (!tval_equal(load_value(buf, i, t), load_value(tmp, 0, t)))
            return 0;
    }
    return 1;
}

#endif
