/* Element sizes and names of the public dtypes and ops. */
#include "cgloo_impl.h"

static const struct {
    size_t size;
    const char *name;
} dtype_info[CGLOO_DTYPE_COUNT] = {
    [CGLOO_INT8] = {1, "int8"},
    [CGLOO_UINT8] = {1, "uint8"},
    [CGLOO_INT32] = {4, "int32"},
    [CGLOO_UINT32] = {4, "uint32"},
    [CGLOO_INT64] = {8, "int64"},
    [CGLOO_UINT64] = {8, "uint64"},
    [CGLOO_FLOAT16] = {2, "float16"},
    [CGLOO_BFLOAT16] = {2, "bfloat16"},
    [CGLOO_FLOAT32] = {4, "float32"},
    [CGLOO_FLOAT64] = {8, "float64"},
    [CGLOO_BOOL] = {1, "bool"},
    [CGLOO_INT16] = {2, "int16"},
    [CGLOO_UINT16] = {2, "uint16"},
    [CGLOO_COMPLEX64] = {8, "complex64"},
    [CGLOO_COMPLEX128] = {16, "complex128"},
};

static const char *const op_names[CGLOO_OP_COUNT] = {
    [CGLOO_SUM] = "sum",   [CGLOO_PRODUCT] = "product", [CGLOO_MIN] = "min",   [CGLOO_MAX] = "max",
    [CGLOO_BAND] = "band", [CGLOO_BOR] = "bor",         [CGLOO_BXOR] = "bxor",
};

size_t cgloo_dtype_size(cgloo_dtype dtype)
{
    return (unsigned)dtype < CGLOO_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

const char *cgloo_dtype_name(cgloo_dtype dtype)
{
    return (unsigned)dtype < CGLOO_DTYPE_COUNT ? dtype_info[dtype].name : NULL;
}

const char *cgloo_op_name(cgloo_op op)
{
    return (unsigned)op < CGLOO_OP_COUNT ? op_names[op] : NULL;
}
