/* Algorithm names per collective, for tools and bindings (cgloo_algorithm_names). */
#include "coll/coll.h"

#include <pthread.h>

/* Each collective's file defines its table, terminated by an entry with a NULL name. */
extern const coll_algorithm cgloo__allreduce_algorithms[];
extern const coll_algorithm cgloo__allgather_algorithms[];
extern const coll_algorithm cgloo__broadcast_algorithms[];
extern const coll_algorithm cgloo__gather_algorithms[];
extern const coll_algorithm cgloo__scatter_algorithms[];
extern const coll_algorithm cgloo__alltoall_algorithms[];
extern const coll_algorithm cgloo__barrier_algorithms[];
extern const coll_algorithm cgloo__reduce_scatter_algorithms[];
extern const coll_algorithm cgloo__reduce_algorithms[];

typedef struct registry_entry {
    const char *collective;
    const coll_algorithm *table;
    const char *names[16];
} registry_entry;

static registry_entry registry[] = {
    {"allreduce", cgloo__allreduce_algorithms, {NULL}},
    {"allgather", cgloo__allgather_algorithms, {NULL}},
    {"allgatherv", cgloo__allgather_algorithms, {NULL}},
    {"broadcast", cgloo__broadcast_algorithms, {NULL}},
    {"gather", cgloo__gather_algorithms, {NULL}},
    {"gatherv", cgloo__gather_algorithms, {NULL}},
    {"scatter", cgloo__scatter_algorithms, {NULL}},
    {"scatterv", cgloo__scatter_algorithms, {NULL}},
    {"alltoall", cgloo__alltoall_algorithms, {NULL}},
    {"alltoallv", cgloo__alltoall_algorithms, {NULL}},
    {"barrier", cgloo__barrier_algorithms, {NULL}},
    {"reduce_scatter", cgloo__reduce_scatter_algorithms, {NULL}},
    {"reduce_scatterv", cgloo__reduce_scatter_algorithms, {NULL}},
    {"reduce", cgloo__reduce_algorithms, {NULL}},
};

static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

static void registry_fill(void)
{
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(registry); i++)
        for (size_t j = 0; registry[i].table[j].name && j < 15; j++)
            registry[i].names[j] = registry[i].table[j].name;
}

const char *const *cgloo_algorithm_names(const char *collective)
{
    if (!collective)
        return NULL;
    pthread_once(&registry_once, registry_fill);
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(registry); i++)
        if (strcmp(registry[i].collective, collective) == 0)
            return registry[i].names;
    return NULL;
}
