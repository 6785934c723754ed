/*
 * alloc.c - allocation wrappers with failure injection for tests.
 */
#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static long alloc_budget = -1;

static int alloc_should_fail(void)
{
    if (alloc_budget < 0)
        return 0;
    if (alloc_budget == 0)
        return 1;
    alloc_budget--;
    return 0;
}

void cp_alloc_fail_after(long count)
{
    alloc_budget = count;
}

void *cp_malloc(size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(size == 0 ? 1 : size);
}

void *cp_calloc(size_t count, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    if (count == 0 || size == 0)
        return calloc(1, 1);
    return calloc(count, size);
}

void *cp_realloc(void *ptr, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return realloc(ptr, size == 0 ? 1 : size);
}

void cp_free(void *ptr)
{
    free(ptr);
}

char *cp_strndup(const char *s, size_t len)
{
    char *copy = cp_malloc(len + 1);

    if (copy == NULL)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

char *cp_strdup(const char *s)
{
    return cp_strndup(s, strlen(s));
}

cp_status cp_array_grow(void *items_ptr, size_t *cap, size_t count, size_t elem_size,
                        size_t first, size_t max)
{
    void *items, *grown;
    size_t want;

    if (count < *cap)
        return CP_OK;
    if (count >= max)
        return CP_ERR_LIMIT;

    want = *cap == 0 ? first : *cap * 2;
    if (want > max)
        want = max;
    if (want <= count || elem_size == 0 || want > SIZE_MAX / elem_size)
        return CP_ERR_NOMEM;

    /* The caller's pointer is copied, not cast, so that any T ** works. */
    memcpy(&items, items_ptr, sizeof items);
    grown = cp_realloc(items, want * elem_size);
    if (grown == NULL)
        return CP_ERR_NOMEM;
    memset((unsigned char *)grown + *cap * elem_size, 0, (want - *cap) * elem_size);
    memcpy(items_ptr, &grown, sizeof grown);
    *cap = want;
    return CP_OK;
}
