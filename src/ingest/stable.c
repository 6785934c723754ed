/*
 * stable.c - the intake's stability tracker (stable.h): a chained hash
 * table of paths, each with the size and mtime last seen, since when they
 * held, and the sweep generation that last observed it.
 */
#include <string.h>

#include "core/alloc.h"
#include "ingest/stable.h"

/* Buckets: a power of two, grown as paths accumulate. */
#define STABLE_BUCKETS_MIN 256

typedef struct stable_item {
    struct stable_item *next;
    uint64_t hash;
    uint64_t size;
    int64_t mtime_us;
    int64_t since_us;
    uint64_t generation;
    char path[];
} stable_item;

struct stable_tracker {
    int64_t stable_us;
    stable_item **buckets;
    size_t bucket_count;
    size_t count;
    uint64_t generation;
};

/* FNV-1a over the path bytes. */
static uint64_t hash_path(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

stable_tracker *stable_create(int64_t stable_us)
{
    stable_tracker *t = cp_calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    t->buckets = cp_calloc(STABLE_BUCKETS_MIN, sizeof *t->buckets);
    if (t->buckets == NULL) {
        cp_free(t);
        return NULL;
    }
    t->bucket_count = STABLE_BUCKETS_MIN;
    t->stable_us = stable_us;
    t->generation = 1;
    return t;
}

void stable_destroy(stable_tracker *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->bucket_count; i++) {
        stable_item *it = t->buckets[i];

        while (it != NULL) {
            stable_item *next = it->next;

            cp_free(it);
            it = next;
        }
    }
    cp_free(t->buckets);
    cp_free(t);
}

/* Doubles the buckets once there are more items than buckets; OOM keeps the old. */
static void grow(stable_tracker *t)
{
    size_t n = t->bucket_count * 2;
    stable_item **b;

    if (t->count < t->bucket_count)
        return;
    b = cp_calloc(n, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < t->bucket_count; i++) {
        stable_item *it = t->buckets[i];

        while (it != NULL) {
            stable_item *next = it->next;
            size_t k = (size_t)(it->hash & (n - 1));

            it->next = b[k];
            b[k] = it;
            it = next;
        }
    }
    cp_free(t->buckets);
    t->buckets = b;
    t->bucket_count = n;
}

static stable_item **find(stable_tracker *t, const char *path, uint64_t h)
{
    stable_item **pp = &t->buckets[h & (t->bucket_count - 1)];

    while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->path, path) != 0))
        pp = &(*pp)->next;
    return pp;
}

bool stable_observe(stable_tracker *t, const char *path, uint64_t size, int64_t mtime_us,
                    int64_t now_us, int64_t *wait_us)
{
    uint64_t h = hash_path(path);
    stable_item **pp = find(t, path, h);
    stable_item *it = *pp;
    int64_t held;

    if (it == NULL) {
        size_t len = strlen(path);

        *wait_us = t->stable_us;
        it = cp_malloc(sizeof *it + len + 1);
        if (it == NULL)
            return false;
        memcpy(it->path, path, len + 1);
        it->hash = h;
        it->size = size;
        it->mtime_us = mtime_us;
        it->since_us = now_us;
        it->generation = t->generation;
        it->next = *pp;
        *pp = it;
        t->count++;
        grow(t);
        return t->stable_us <= 0;
    }
    it->generation = t->generation;
    if (it->size != size || it->mtime_us != mtime_us) {
        it->size = size;
        it->mtime_us = mtime_us;
        it->since_us = now_us;
    }
    held = now_us - it->since_us;
    *wait_us = held >= t->stable_us ? 0 : t->stable_us - held;
    return held >= t->stable_us;
}

void stable_forget(stable_tracker *t, const char *path)
{
    stable_item **pp = find(t, path, hash_path(path));
    stable_item *it = *pp;

    if (it == NULL)
        return;
    *pp = it->next;
    cp_free(it);
    t->count--;
}

void stable_sweep(stable_tracker *t)
{
    for (size_t i = 0; i < t->bucket_count; i++) {
        stable_item **pp = &t->buckets[i];

        while (*pp != NULL) {
            stable_item *it = *pp;

            if (it->generation != t->generation) {
                *pp = it->next;
                cp_free(it);
                t->count--;
            } else {
                pp = &it->next;
            }
        }
    }
    t->generation++;
}

size_t stable_count(const stable_tracker *t)
{
    return t->count;
}
