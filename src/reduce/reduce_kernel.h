/*
 * Reduction kernels: one function per (op, dtype), inout[i] = inout[i] (op) in[i].
 */
#ifndef CGLOO_REDUCE_KERNEL_H
#define CGLOO_REDUCE_KERNEL_H

#include "cgloo_impl.h"

typedef void (*cgloo__reduce_kernel)(void *inout, const void *in, size_t count);

/* cgloo__reduce_kernel_for returns the fastest kernel this processor runs for (op, dtype), or
 * NULL when the pair is invalid (a bitwise op on a floating-point dtype, min, max or a bitwise
 * op on a complex one, out-of-range values).
 * Thread-safe; the first call picks the instruction set. */
cgloo__reduce_kernel cgloo__reduce_kernel_for(cgloo_op op, cgloo_dtype dtype);

#endif
