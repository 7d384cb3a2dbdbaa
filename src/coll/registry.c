/* Algorithm names per collective, for tools and bindings (cgloo_algorithm_names). */
#include "coll/coll.h"

#include <pthread.h>

typedef struct registry_entry {
    const char *collective;
    const coll_algorithm *table;
    const char *names[16];
} registry_entry;

/* One entry per row of collectives.h; the names are filled in from the tables once. */
static registry_entry registry[] = {
#define REGISTRY_ENTRY(name, table, kind) {#name, cgloo__##table##_algorithms, {NULL}},
    CGLOO_COLLECTIVES(REGISTRY_ENTRY)
#undef REGISTRY_ENTRY
};

static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

static void registry_fill(void)
{
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(registry); i++)
        for (size_t j = 0; j < 15 && registry[i].table[j].name; j++)
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
