/*
 * alloc.h - the allocation wrappers every cloudpacs module uses.
 *
 * They behave like malloc and friends, but a test can make the n-th
 * allocation fail (cp_alloc_fail_after), so that every out-of-memory path is
 * exercised. Library layers never abort on a failed allocation: they return
 * CP_ERR_NOMEM.
 */
#ifndef CP_CORE_ALLOC_H
#define CP_CORE_ALLOC_H

#include <stddef.h>

#include "core/status.h"

void *cp_malloc(size_t size);
void *cp_calloc(size_t count, size_t size);
void *cp_realloc(void *ptr, size_t size);
void cp_free(void *ptr);

/* A copy of the first len bytes of s with a terminating NUL; NULL on failure. */
char *cp_strndup(const char *s, size_t len);
char *cp_strdup(const char *s);

/*
 * Makes room for element number `count` of a growable array whose address
 * is items_ptr (a `T **`) and capacity *cap: when count == *cap the array is
 * reallocated to twice its capacity (`first` when empty), never past `max`
 * elements, and the new room is zeroed. CP_ERR_LIMIT when count reaches max,
 * CP_ERR_NOMEM when the allocation fails; the array is unchanged then.
 */
cp_status cp_array_grow(void *items_ptr, size_t *cap, size_t count, size_t elem_size,
                        size_t first, size_t max);

/*
 * For tests: the next `count` allocations succeed and every one after them
 * fails, until cp_alloc_fail_after(-1) turns failures off. Not thread-safe;
 * meant for single-threaded unit tests.
 */
void cp_alloc_fail_after(long count);

#endif
