/* An intrusive doubly-linked list: the queues of requests and messages are made of these. */
#ifndef CGLOO_LIST_H
#define CGLOO_LIST_H

#include <stddef.h>

typedef struct cgloo__list {
    struct cgloo__list *next, *prev;
} cgloo__list;

#define CGLOO_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void cgloo__list_init(cgloo__list *l)
{
    l->next = l->prev = l;
}

static inline int cgloo__list_empty(const cgloo__list *l)
{
    return l->next == l;
}

static inline void cgloo__list_push_back(cgloo__list *l, cgloo__list *item)
{
    item->prev = l->prev;
    item->next = l;
    l->prev->next = item;
    l->prev = item;
}

static inline void cgloo__list_remove(cgloo__list *item)
{
    item->prev->next = item->next;
    item->next->prev = item->prev;
    item->next = item->prev = item;
}

/* Iterate where the body may remove the current item. */
#define CGLOO_LIST_FOR_EACH_SAFE(it, tmp, head)                                                    \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

#endif
