/*
 * The Open MPI counterpart of `cgloo-bench --mode pingpong|stream`, so both run on the same
 * machine in the same script and the report can give ratios. Same sizes, same windowed stream
 * with an empty acknowledgement per window, same round-trip timing, same CSV columns.
 * Build: mpicc -O2 -o mpi_p2p mpi_p2p.c
 * Run:   mpirun -np 2 --mca btl tcp,self --mca btl_tcp_if_include lo ./mpi_p2p pingpong|stream
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 16

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double once(int stream, int rank, char *buf, int n)
{
    double t0 = MPI_Wtime();
    if (!stream) {
        if (rank == 0) {
            MPI_Send(buf, n, MPI_BYTE, 1, 1, MPI_COMM_WORLD);
            MPI_Recv(buf, n, MPI_BYTE, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, n, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, n, MPI_BYTE, 0, 1, MPI_COMM_WORLD);
        }
        return (MPI_Wtime() - t0) * 1e6;
    }
    MPI_Request reqs[WINDOW];
    for (int w = 0; w < WINDOW; w++) {
        if (rank == 0)
            MPI_Isend(buf, n, MPI_BYTE, 1, 1, MPI_COMM_WORLD, &reqs[w]);
        else
            MPI_Irecv(buf, n, MPI_BYTE, 0, 1, MPI_COMM_WORLD, &reqs[w]);
    }
    MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
    if (rank == 0)
        MPI_Recv(NULL, 0, MPI_BYTE, 1, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    else
        MPI_Send(NULL, 0, MPI_BYTE, 0, 2, MPI_COMM_WORLD);
    return (MPI_Wtime() - t0) * 1e6 / WINDOW;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int stream = argc > 1 && strcmp(argv[1], "stream") == 0;
    long min = argc > 2 ? atol(argv[2]) : 8, max = argc > 3 ? atol(argv[3]) : 4 << 20;
    double budget_us = (argc > 4 ? atof(argv[4]) : 500) * 1000;
    char *buf = calloc(1, (size_t)max);
    double *t = malloc(200000 * sizeof *t);
    for (long n = min; n <= max; n *= 2) {
        int warm = n >= (1 << 20) ? 11 : 100;
        double t0 = MPI_Wtime();
        for (int i = 0; i < warm; i++)
            once(stream, rank, buf, (int)n);
        long iters = (long)(budget_us / (((MPI_Wtime() - t0) * 1e6) / warm));
        iters = iters < 10 ? 10 : iters > 200000 ? 200000 : iters;
        MPI_Bcast(&iters, 1, MPI_LONG, 0, MPI_COMM_WORLD);
        for (long i = 0; i < iters; i++)
            t[i] = once(stream, rank, buf, (int)n);
        if (rank == 0) {
            qsort(t, (size_t)iters, sizeof *t, cmp_double);
            double p50 = t[iters / 2], one_way = stream ? p50 : p50 / 2;
            double gbps = n / one_way / 1e3;
            printf("%s,,2,%ld,,%.2f,%.2f,%.2f,%.2f,%.3f,%.3f,%ld\n", stream ? "stream" : "pingpong",
                   n, t[0], p50, t[(long)(iters * 0.99)], t[iters - 1], gbps, gbps, iters);
            fflush(stdout);
        }
    }
    free(buf);
    free(t);
    MPI_Finalize();
    return 0;
}
