"""The cases the cgloo.torch tests check, without importing torch, so that pytest can list them
as tests and mark the ones waiting for a cgloo dtype to skip.

A case is "<operation>/<dtype>", the operation a torch.distributed function (reductions with
their op: "all_reduce.SUM"). The rank program runs each case on a cgloo group and on a gloo
group and compares."""

DTYPES = ["uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32",
          "float64", "bool", "complex64", "complex128"]
INTS = ["uint8", "int8", "int16", "int32", "int64"]
FLOATS = ["float16", "bfloat16", "float32", "float64"]
COMPLEX = ["complex64", "complex128"]

# The cgloo.DType that reductions of these dtypes need; it arrives with a later cgloo.
NEW_DTYPES = {"int16": "INT16", "bool": "BOOL", "complex64": "COMPLEX64",
              "complex128": "COMPLEX128"}

# Operations that move data: any dtype (cgloo.torch sends their bytes).
MOVES = ["broadcast", "all_gather", "all_gather_into_tensor", "gather", "scatter", "all_to_all",
         "all_to_all_single", "all_to_all_single_splits", "send_recv", "isend_irecv_any",
         "batch_isend_irecv"]

# Reductions and the dtypes torch allows them on (complex: SUM and AVG only, as torch has it).
OPS = {
    "SUM": DTYPES,
    "AVG": FLOATS + COMPLEX,
    "PRODUCT": INTS + FLOATS + ["bool"],
    "MIN": INTS + FLOATS + ["bool"],
    "MAX": INTS + FLOATS + ["bool"],
    "BAND": INTS + ["bool"],
    "BOR": INTS + ["bool"],
    "BXOR": INTS + ["bool"],
}
REDUCERS = ["all_reduce", "all_reduce_coalesced", "reduce", "reduce_scatter",
            "reduce_scatter_tensor"]

# What the quick runs (the other init methods) check: every operation on two dtypes.
QUICK_DTYPES = ["float32", "int64"]


def cases(dtypes=DTYPES):
    """Every case, in a fixed order."""
    out = [f"{op}/{d}" for op in MOVES for d in dtypes]
    for reducer in REDUCERS:
        out += [f"{reducer}.{op}/{d}" for op, ds in OPS.items() for d in ds if d in dtypes]
    return out


def needs(case):
    """The cgloo.DType name a case waits for, or None. all_reduce and all_reduce_coalesced hand
    complex tensors to the backend as real views, so they need no complex dtype."""
    op, dtype = case.split("/")
    if op in MOVES or dtype not in NEW_DTYPES:
        return None
    if op.split(".")[0] in ("all_reduce", "all_reduce_coalesced") and dtype in COMPLEX:
        return None
    return NEW_DTYPES[dtype]
