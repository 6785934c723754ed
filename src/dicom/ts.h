/*
 * ts.h - transfer syntaxes (PS3.5 section 10 and Annex A) and what the reader
 * and the writer need to know about each.
 */
#ifndef DCM_TS_H
#define DCM_TS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dcm_transfer_syntax {
    const char *uid;
    const char *name;
    bool explicit_vr;
    bool big_endian;
    bool deflated;          /* the data set after the meta group is deflated (RFC 1951) */
    bool encapsulated;      /* pixel data in fragments (compressed) */
    bool lossy;
    bool retired;
} dcm_transfer_syntax;

extern const dcm_transfer_syntax dcm_ts_implicit_le;    /* 1.2.840.10008.1.2 */
extern const dcm_transfer_syntax dcm_ts_explicit_le;    /* 1.2.840.10008.1.2.1 */
extern const dcm_transfer_syntax dcm_ts_deflated_le;    /* 1.2.840.10008.1.2.1.99 */
extern const dcm_transfer_syntax dcm_ts_explicit_be;    /* 1.2.840.10008.1.2.2 */

/*
 * The transfer syntax whose UID is `len` bytes at `uid` (trailing NUL and
 * spaces ignored); NULL if it is not one this code knows.
 */
const dcm_transfer_syntax *dcm_ts_lookup(const char *uid, size_t len);

/* The number of known transfer syntaxes, and the i-th of them. */
size_t dcm_ts_count(void);
const dcm_transfer_syntax *dcm_ts_at(size_t i);

#endif
