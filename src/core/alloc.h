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

void *cp_malloc(size_t size);
void *cp_calloc(size_t count, size_t size);
void *cp_realloc(void *ptr, size_t size);
void cp_free(void *ptr);

/* A copy of the first len bytes of s with a terminating NUL; NULL on failure. */
char *cp_strndup(const char *s, size_t len);
char *cp_strdup(const char *s);

/*
 * For tests: the next `count` allocations succeed and every one after them
 * fails, until cp_alloc_fail_after(-1) turns failures off. Not thread-safe;
 * meant for single-threaded unit tests.
 */
void cp_alloc_fail_after(long count);

#endif
