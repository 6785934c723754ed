/*
 * alloc.c - allocation wrappers with failure injection for tests.
 */
#include "core/alloc.h"

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
