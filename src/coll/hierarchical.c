/*
 * The host topology as the hierarchical algorithms see it (hierarchical.h).
 */
#include "coll/hierarchical.h"
#include "core/context.h"

const cgloo__topology *cgloo__hier_topology(const coll *c)
{
    const cgloo__topology *t = c->group ? NULL : c->ctx->topo;
    if (!t || t->size != c->size || t->n_hosts < 2 || t->max_local < 2)
        return NULL;
    return t;
}
