/*
 * The Facebook Gloo counterpart of cgloo-bench's collective modes, beside bench/mpi_coll.c, so
 * that cgloo, Open MPI and Gloo run on the same machine in the same script. Same flags, modes,
 * sizes, values, warm-up, iteration agreement (rank 0 decides and broadcasts), barrier before
 * each timed call, slowest-rank timing (a max-allreduce of the per-call times after the timed
 * loop), bandwidth definitions and CSV columns as tools/cgloo-bench.c, whose opening comment
 * defines them. The algorithm column reads "gloo:NAME", NAME being Gloo's algorithm. The
 * collectives, sizes, values and expected results are bench_check.h's, which all three
 * benchmarks include.
 *
 * Build: g++ -O2 -std=c++17 -o gloo_coll gloo_coll.cc -lgloo -pthread
 * Run:   cgloo-run -n 4 ./gloo_coll --mode allreduce [--algorithm best]
 *            [--elements N | --min-elements N --max-elements N] [--factor F]
 *            [--dtype float32|float64|int32|int64] [--iteration-time-ms MS]
 *            [--iteration-count N] [--warmup N] [--no-barrier] [--verify] [--csv]
 *            [--store-dir DIR]
 *
 * cgloo-run serves only as a process launcher: each rank takes CGLOO_RANK and CGLOO_SIZE from
 * the environment and meets the others through a gloo::rendezvous::FileStore in --store-dir
 * (default $GLOO_COLL_STORE_DIR, else /tmp/gloo_coll), under a PrefixStore named by
 * CGLOO_RUN_ID so that runs sharing the directory never see each other's keys. The ranks then
 * connect a full mesh of gloo::transport::tcp pairs on 127.0.0.1. Every Gloo call has a 60 s
 * timeout, so a lost peer ends the run with an error instead of a hang.
 *
 * Gloo's algorithms, and where they differ from mpi_coll's calls:
 *   allreduce       the classic in-place classes AllreduceRing, AllreduceRingChunked,
 *                   AllreduceHalvingDoubling and AllreduceBcube (--algorithm ring, ring_chunked,
 *                   halving_doubling, bcube). `best` (the default) measures each of them at
 *                   every size, each with its own warm-up, iteration count and timed loop, and
 *                   reports the one with the lowest p50. That minimum over four p50s is slightly
 *                   optimistic against a library measured once. bcube needs a power-of-two rank
 *                   count (base 2); `best` skips it otherwise.
 *   reduce_scatter  ReduceScatterHalvingDoubling, in place over the whole vector of `elements`,
 *                   with recvCounts `count` for every rank: rank r's reduced block is left at
 *                   the front of the buffer, the rest is scratch.
 *                   These classic algorithms are built once per size, before the warm-up and
 *                   outside the timing (their contract: construct, then run() many times), and
 *                   work in place on the receive buffer, which is refilled from the send buffer
 *                   before each call's barrier, untimed. So Gloo's times hold no input-to-output
 *                   copy, which an out-of-place MPI call may include.
 *   broadcast       gloo::broadcast (binomial tree), in place on the receive buffer, as MPI_Bcast.
 *   allgather       gloo::allgather (ring), out of place.
 *   reduce          gloo::reduce (ring reduce-scatter, then a gather to the root), out of place;
 *                   it needs an output buffer on every rank and uses the non-roots' as scratch.
 *   gather, scatter gloo::gather and gloo::scatter (the root talks to every rank directly); the
 *                   root's scatter inputs are one buffer per rank, pointing into its send buffer.
 *   alltoall        gloo::alltoall (pairwise exchange), out of place.
 *   barrier         gloo::barrier (dissemination).
 * The options-based calls build their options (and unbound buffers) in every call, as a caller
 * of those functions does. Gloo's tcp transport adds a device thread per process, which shares
 * the rank's CPU when cgloo-run pins it.
 */
#include "bench_check.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/allreduce_bcube.h>
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/alltoall.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/gather.h>
#include <gloo/reduce.h>
#include <gloo/reduce_scatter.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/scatter.h>
#include <gloo/transport/tcp/device.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{

constexpr long kMaxSamples = 200000;
constexpr long kMinIters = 5;
constexpr std::chrono::milliseconds kTimeout{60000};

/* Gloo's algorithm for each collective (allreduce: --algorithm chooses). */
const char *gloo_algorithm(bench_coll m)
{
    switch (m) {
    case BENCH_REDUCE_SCATTER:
        return "halving_doubling";
    case BENCH_ALLGATHER:
    case BENCH_REDUCE:
        return "ring";
    case BENCH_BROADCAST:
        return "binomial";
    case BENCH_GATHER:
    case BENCH_SCATTER:
        return "direct";
    case BENCH_ALLTOALL:
        return "pairwise";
    case BENCH_BARRIER:
        return "dissemination";
    default:
        return "";
    }
}
const char *const dtypes[] = {"float32", "float64", "int32", "int64"};
const char *const allreduce_algos[] = {"ring", "ring_chunked", "halving_doubling", "bcube"};

struct Options {
    int mode = BENCH_ALLREDUCE, dtype = 0, factor = 2, iteration_time_ms = 500, iteration_count = 0;
    int warmup = 20;
    bool no_barrier = false, verify = false, csv = false;
    size_t min_elems = 1, max_elems = 1u << 20;
    std::string algorithm = "best", store_dir;
};

using Ctx = std::shared_ptr<gloo::Context>;

template <typename T> struct Bench {
    const Options &o;
    Ctx ctx;
    bench_case k; /* the collective, rank, size and the size being measured */
    std::vector<T> send{}, recv{};
    std::vector<double> t{};
    std::unique_ptr<gloo::Algorithm> alg{}; /* allreduce, reduce_scatter: the classic class */
};

[[noreturn]] void usage()
{
    fprintf(stderr, "usage: gloo_coll --mode MODE [--algorithm ring|ring_chunked|"
                    "halving_doubling|bcube|best]\n"
                    "       [--elements N | --min-elements N --max-elements N] [--factor F]\n"
                    "       [--dtype float32|float64|int32|int64] [--iteration-time-ms MS] "
                    "[--iteration-count N]\n"
                    "       [--warmup N] [--no-barrier] [--verify] [--csv] [--store-dir DIR]\n");
    exit(2);
}

template <size_t N> int lookup(const char *v, const char *const (&names)[N])
{
    for (size_t i = 0; i < N; i++)
        if (strcmp(v, names[i]) == 0)
            return (int)i;
    usage();
}

int lookup_mode(const char *v)
{
    int m = bench_coll_find(v);
    if (m < 0)
        usage();
    return m;
}

void parse_valued(Options &o, const std::string &a, const char *v)
{
    if (a == "--mode")
        o.mode = lookup_mode(v);
    else if (a == "--algorithm")
        o.algorithm = strcmp(v, "best") == 0 ? v : allreduce_algos[lookup(v, allreduce_algos)];
    else if (a == "--dtype")
        o.dtype = lookup(v, dtypes);
    else if (a == "--elements")
        o.min_elems = o.max_elems = strtoull(v, nullptr, 10);
    else if (a == "--min-elements")
        o.min_elems = strtoull(v, nullptr, 10);
    else if (a == "--max-elements")
        o.max_elems = strtoull(v, nullptr, 10);
    else if (a == "--factor")
        o.factor = atoi(v);
    else if (a == "--iteration-time-ms")
        o.iteration_time_ms = atoi(v);
    else if (a == "--iteration-count")
        o.iteration_count = atoi(v);
    else if (a == "--warmup")
        o.warmup = atoi(v);
    else if (a == "--store-dir")
        o.store_dir = v;
    else
        usage();
}

Options parse_args(int argc, char **argv)
{
    Options o;
    const char *dir = getenv("GLOO_COLL_STORE_DIR");
    o.store_dir = dir && *dir ? dir : "/tmp/gloo_coll";
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--csv")
            o.csv = true;
        else if (a == "--verify")
            o.verify = true;
        else if (a == "--no-barrier")
            o.no_barrier = true;
        else if (i + 1 < argc)
            parse_valued(o, a, argv[++i]);
        else
            usage();
    }
    /* the classic algorithms take an int count */
    if (o.factor < 2 || o.warmup < 1 || o.warmup > kMaxSamples || o.iteration_time_ms < 1 ||
        o.min_elems < 1 || o.max_elems < o.min_elems || o.max_elems > 0x7fffffff ||
        o.iteration_count < 0 || o.iteration_count > kMaxSamples)
        usage();
    return o;
}

/* ---- Gloo plumbing ------------------------------------------------------------------------- */

template <typename O> O with_timeout(O &&opts)
{
    opts.setTimeout(kTimeout);
    return std::move(opts);
}

void barrier(const Ctx &c)
{
    auto opts = with_timeout(gloo::BarrierOptions(c));
    gloo::barrier(opts);
}

void broadcast_long(const Ctx &c, long *v)
{
    auto opts = with_timeout(gloo::BroadcastOptions(c));
    opts.setOutput(v, 1);
    opts.setRoot(0);
    gloo::broadcast(opts);
}

/* In place, with a Gloo reduction such as gloo::max<double>. */
template <typename U>
void allreduce_with(const Ctx &c, U *p, size_t n,
                    void (*fn)(void *, const void *, const void *, size_t))
{
    auto opts = with_timeout(gloo::AllreduceOptions(c));
    opts.setOutput(p, n);
    opts.setReduceFunction(fn);
    gloo::allreduce(opts);
}

int env_int(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        throw std::runtime_error(std::string(name) + " is not set: run under cgloo-run");
    return atoi(v);
}

Ctx connect(const Options &o)
{
    int rank = env_int("CGLOO_RANK"), size = env_int("CGLOO_SIZE");
    const char *run_id = getenv("CGLOO_RUN_ID");
    if (!run_id || !*run_id)
        throw std::runtime_error("CGLOO_RUN_ID is not set: run under cgloo-run");
    mkdir(o.store_dir.c_str(), 0700); /* may exist: FileStore says if it is unusable */
    gloo::rendezvous::FileStore files(o.store_dir);
    gloo::rendezvous::PrefixStore store(run_id, files);
    gloo::transport::tcp::attr attr;
    attr.hostname = "127.0.0.1";
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
    ctx->setTimeout(kTimeout); /* the pairs, and so the classic algorithms, take it from here */
    ctx->connectFullMesh(store, dev);
    /* once every rank is connected nobody reads the keys again: leave the directory clean */
    barrier(ctx);
    for (const auto &path : files.getAllKeyFilePaths())
        unlink(path.c_str());
    return ctx;
}

/* ---- the call ------------------------------------------------------------------------------ */

template <typename T>
std::unique_ptr<gloo::Algorithm> make_allreduce(Bench<T> &b, const std::string &name)
{
    std::vector<T *> ptrs{b.recv.data()};
    int n = (int)b.k.count;
    if (name == "ring")
        return std::make_unique<gloo::AllreduceRing<T>>(b.ctx, ptrs, n);
    if (name == "ring_chunked")
        return std::make_unique<gloo::AllreduceRingChunked<T>>(b.ctx, ptrs, n);
    if (name == "halving_doubling")
        return std::make_unique<gloo::AllreduceHalvingDoubling<T>>(b.ctx, ptrs, n);
    return std::make_unique<gloo::AllreduceBcube<T>>(b.ctx, ptrs, n);
}

template <typename T> std::unique_ptr<gloo::Algorithm> make_reduce_scatter(Bench<T> &b)
{
    std::vector<int> counts(b.k.size, (int)b.k.count);
    std::vector<T *> ptrs{b.recv.data()};
    return std::make_unique<gloo::ReduceScatterHalvingDoubling<T>>(b.ctx, ptrs, (int)b.k.elements,
                                                                   counts);
}

template <typename T> void run_rooted(Bench<T> &b)
{
    T *s = b.send.data(), *r = b.recv.data();
    size_t n = b.k.count;
    if (b.k.coll == BENCH_BROADCAST) {
        auto opts = with_timeout(gloo::BroadcastOptions(b.ctx));
        opts.setOutput(r, n);
        opts.setRoot(0);
        gloo::broadcast(opts);
    } else if (b.k.coll == BENCH_REDUCE) {
        auto opts = with_timeout(gloo::ReduceOptions(b.ctx));
        opts.setInput(s, n);
        opts.setOutput(r, n);
        opts.setRoot(0);
        opts.setReduceFunction(
            static_cast<void (*)(void *, const void *, const void *, size_t)>(&gloo::sum<T>));
        gloo::reduce(opts);
    } else if (b.k.coll == BENCH_GATHER) {
        auto opts = with_timeout(gloo::GatherOptions(b.ctx));
        opts.setInput(s, n);
        if (b.k.rank == 0)
            opts.setOutput(r, b.k.elements);
        opts.setRoot(0);
        gloo::gather(opts);
    } else {
        auto opts = with_timeout(gloo::ScatterOptions(b.ctx));
        if (b.k.rank == 0) {
            std::vector<T *> blocks; /* one input per rank, all in the send buffer */
            for (int q = 0; q < b.k.size; q++)
                blocks.push_back(s + q * n);
            opts.setInputs(blocks, n);
        }
        opts.setOutput(r, n);
        opts.setRoot(0);
        gloo::scatter(opts);
    }
}

template <typename T> void run_coll(Bench<T> &b)
{
    T *s = b.send.data(), *r = b.recv.data();
    switch (b.k.coll) {
    case BENCH_ALLREDUCE:
    case BENCH_REDUCE_SCATTER:
        b.alg->run();
        break;
    case BENCH_ALLGATHER: {
        auto opts = with_timeout(gloo::AllgatherOptions(b.ctx));
        opts.setInput(s, b.k.count);
        opts.setOutput(r, b.k.elements);
        gloo::allgather(opts);
        break;
    }
    case BENCH_ALLTOALL: {
        auto opts = with_timeout(gloo::AlltoallOptions(b.ctx));
        opts.setInput(s, b.k.elements);
        opts.setOutput(r, b.k.elements);
        gloo::alltoall(opts);
        break;
    }
    case BENCH_BARRIER:
        barrier(b.ctx);
        break;
    default:
        run_rooted(b);
        break;
    }
}

/* The in-place classes overwrite their input: give every call the same one, untimed. */
template <typename T> void restore_input(Bench<T> &b)
{
    if (b.k.coll == BENCH_ALLREDUCE || b.k.coll == BENCH_REDUCE_SCATTER)
        std::copy_n(b.send.begin(), b.k.coll == BENCH_ALLREDUCE ? b.k.count : b.k.elements,
                    b.recv.begin());
}

/* ---- values and verification: bench_check.h's, in this program's dtypes ------------------ */

template <typename T> void fill_inputs(Bench<T> &b)
{
    T *buf = b.k.coll == BENCH_BROADCAST ? b.recv.data() : b.send.data();
    long src = bench_input_source(&b.k, 0);
    for (size_t i = 0; i < bench_input_len(&b.k); i++)
        buf[i] = (T)bench_value(&b.k, src, i);
}

template <typename T> int64_t check_outputs(const Bench<T> &b, const char *algo)
{
    int64_t bad = 0;
    for (size_t i = 0; i < bench_output_len(&b.k); i++) {
        long v = bench_expected(&b.k, i);
        if (v >= 0 && b.recv[i] != (T)v && bad++ < 5)
            fprintf(stderr, "gloo_coll: rank %d: %s (%s): element %zu is wrong (expected %ld)\n",
                    b.k.rank, bench_colls[b.k.coll].name, algo, i, v);
    }
    return bad;
}

/* first: run one call on a poisoned output; otherwise check what the last timed call left. */
template <typename T> void verify(Bench<T> &b, bool first, const char *algo)
{
    if (first) {
        if (!bench_output_is_input(&b.k))
            std::fill_n(reinterpret_cast<unsigned char *>(b.recv.data()),
                        bench_output_len(&b.k) * sizeof(T), 0xff);
        restore_input(b);
        run_coll(b);
    }
    int64_t bad = check_outputs(b, algo);
    allreduce_with(b.ctx, &bad, 1, &gloo::sum<int64_t>);
    if (bad == 0)
        return;
    if (b.k.rank == 0)
        fprintf(stderr, "gloo_coll: %s (%s), %zu elements: %lld wrong output elements\n",
                bench_colls[b.k.coll].name, algo, b.k.elements, (long long)bad);
    exit(1);
}

/* ---- timing, as in cgloo-bench -------------------------------------------------------------- */

double now_us()
{
    using namespace std::chrono;
    return duration<double, std::micro>(steady_clock::now().time_since_epoch()).count();
}

template <typename T> double time_call(Bench<T> &b)
{
    restore_input(b);
    if (!b.o.no_barrier)
        barrier(b.ctx);
    double t0 = now_us();
    run_coll(b);
    return now_us() - t0;
}

template <typename T> double timed_wall(Bench<T> &b)
{
    double t0 = now_us();
    time_call(b);
    return now_us() - t0;
}

long iterations_for(const Options &o, double per_call_us)
{
    if (o.iteration_count > 0)
        return o.iteration_count;
    double iters = o.iteration_time_ms * 1000.0 / std::max(per_call_us, 0.01);
    return iters < kMinIters ? kMinIters : iters > kMaxSamples ? kMaxSamples : (long)iters;
}

template <typename T> long warm_up(Bench<T> &b)
{
    double first = timed_wall(b);
    long warm = 0, iters = 0;
    if (b.k.rank == 0) {
        double cap = b.o.iteration_time_ms * 1000.0 / 4 / std::max(first, 1.0);
        warm = cap < 1 ? 1 : cap < b.o.warmup ? (long)cap : b.o.warmup;
    }
    broadcast_long(b.ctx, &warm);
    for (long i = 0; i < warm; i++)
        b.t[i] = timed_wall(b);
    if (b.k.rank == 0) {
        std::sort(b.t.begin(), b.t.begin() + warm);
        iters = iterations_for(b.o, b.t[warm / 2]);
    }
    broadcast_long(b.ctx, &iters);
    return iters;
}

/* One algorithm at one size: the slowest rank's time of each call, sorted. */
template <typename T> std::vector<double> measure(Bench<T> &b, const char *algo)
{
    barrier(b.ctx); /* every rank has built its algorithm before data moves */
    if (b.o.verify)
        verify(b, true, algo);
    long iters = warm_up(b);
    barrier(b.ctx);
    for (long i = 0; i < iters; i++)
        b.t[i] = time_call(b);
    allreduce_with(b.ctx, b.t.data(), (size_t)iters, &gloo::max<double>);
    if (b.o.verify)
        verify(b, false, algo);
    std::vector<double> t(b.t.begin(), b.t.begin() + iters);
    std::sort(t.begin(), t.end());
    return t;
}

template <typename T>
void report(const Bench<T> &b, const std::vector<double> &t, const std::string &algo)
{
    size_t bytes = b.k.elements * sizeof(T), iters = t.size();
    double p50 = t[iters / 2];
    double algbw = p50 > 0 ? bytes / p50 / 1e3 : 0;
    double busbw = algbw * bench_bus_factor(b.k.coll, b.k.size);
    const char *fmt = b.o.csv ? "%s,gloo:%s,%d,%zu,%zu,%.2f,%.2f,%.2f,%.2f,%.3f,%.3f,%zu\n"
                              : "%s gloo:%s %d ranks %12zu B %11zu el  min %.2f p50 %.2f p99 "
                                "%.2f max %.2f us  algbw %.3f busbw %.3f GB/s  %zu samples\n";
    printf(fmt, bench_colls[b.k.coll].name, algo.c_str(), b.k.size, bytes, b.k.elements, t[0], p50,
           t[(size_t)(iters * 0.99)], t[iters - 1], algbw, busbw, iters);
    fflush(stdout);
}

/* The algorithms to measure at this size: all four for allreduce --algorithm best. */
template <typename T> std::vector<std::string> candidates(const Bench<T> &b)
{
    if (b.k.coll != BENCH_ALLREDUCE)
        return {gloo_algorithm(b.k.coll)};
    if (b.o.algorithm != "best")
        return {b.o.algorithm};
    bool pow2 = (b.k.size & (b.k.size - 1)) == 0;
    std::vector<std::string> all;
    for (const char *a : allreduce_algos)
        if (pow2 || strcmp(a, "bcube") != 0)
            all.push_back(a);
    return all;
}

template <typename T> void bench_size(Bench<T> &b)
{
    bench_set_modulus(&b.k, 1l << 24); /* every dtype holds sums below 2^24 exactly */
    fill_inputs(b);
    std::vector<double> best;
    std::string best_algo;
    for (const auto &algo : candidates(b)) {
        if (b.k.coll == BENCH_ALLREDUCE)
            b.alg = make_allreduce(b, algo);
        else if (b.k.coll == BENCH_REDUCE_SCATTER)
            b.alg = make_reduce_scatter(b);
        auto t = measure(b, algo.c_str());
        barrier(b.ctx); /* no rank frees its algorithm's buffers while a peer still uses them */
        b.alg.reset();
        if (best.empty() || t[t.size() / 2] < best[best.size() / 2])
            best = std::move(t), best_algo = algo;
    }
    if (b.k.rank == 0)
        report(b, best, best_algo);
}

template <typename T> void run(const Options &o, const Ctx &ctx)
{
    Bench<T> b{o, ctx, bench_case_make((bench_coll)o.mode, ctx->rank, ctx->size, 1)};
    b.send.resize(o.max_elems);
    b.recv.resize(o.max_elems);
    b.t.resize(kMaxSamples);
    if (o.mode == BENCH_ALLREDUCE && o.algorithm == "bcube" && (b.k.size & (b.k.size - 1)) != 0)
        throw std::runtime_error("bcube needs a power-of-two number of ranks");
    if (b.k.rank == 0 && o.csv)
        printf("mode,algorithm,ranks,bytes,elements,min_us,p50_us,p99_us,max_us,algbw_gbps,"
               "busbw_gbps,samples\n");
    for (size_t n = o.min_elems;; n *= (size_t)o.factor) {
        if (bench_set_size(&b.k, n))
            bench_size(b);
        if (o.mode == BENCH_BARRIER || n > o.max_elems / (size_t)o.factor)
            break;
    }
    barrier(ctx); /* nobody closes its connections while a peer still waits on them */
}

} // namespace

int main(int argc, char **argv)
{
    Options o = parse_args(argc, argv);
    try {
        Ctx ctx = connect(o);
        switch (o.dtype) {
        case 0:
            run<float>(o, ctx);
            break;
        case 1:
            run<double>(o, ctx);
            break;
        case 2:
            run<int32_t>(o, ctx);
            break;
        default:
            run<int64_t>(o, ctx);
            break;
        }
    } catch (const std::exception &e) {
        fprintf(stderr, "gloo_coll: rank %s: %s\n",
                getenv("CGLOO_RANK") ? getenv("CGLOO_RANK") : "?", e.what());
        return 1;
    }
    return 0;
}
