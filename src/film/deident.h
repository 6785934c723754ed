/*
 * deident.h - de-identification of a patient's study for a share link that
 * asks for it (film_share_link.deidentify): the Basic Application Level
 * Confidentiality Profile of PS3.15 Annex E (table E.1-1, the "Basic
 * Profile" column), with Retain Device Identity and Retain Longitudinal
 * Temporal Information off.
 *
 * One film_deident belongs to one link. Its UID replacements are derived
 * from a key (keyed BLAKE2b of the original UID, written as a "2.25." UID),
 * so the same original UID always becomes the same new one under that link:
 * the study, its series and their references stay consistent across files,
 * requests and restarts, and two links never share replacements.
 */
#ifndef CP_FILM_DEIDENT_H
#define CP_FILM_DEIDENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "dicom/io.h"

#define FILM_DEIDENT_KEY_BYTES 32

/* A "2.25." UID of a 128-bit value: at most 44 characters and a NUL. */
#define FILM_DEIDENT_UID_MAX 64

typedef struct film_deident film_deident;

/*
 * A context for one link. key (FILM_DEIDENT_KEY_BYTES) keys the UID
 * replacements; pseudonym (for example "ANON-3F2A") becomes the Patient's
 * Name and Patient ID of every file. Both are copied. *out is the caller's,
 * freed with film_deident_close.
 */
cp_status film_deident_open(const uint8_t key[FILM_DEIDENT_KEY_BYTES], const char *pseudonym,
                            film_deident **out, cp_error *err);

void film_deident_close(film_deident *d);

/* The pseudonym given to film_deident_open. */
const char *film_deident_pseudonym(const film_deident *d);

/*
 * The replacement of uid (a UID as stored, trailing NUL or space padding
 * ignored) into out, NUL-terminated. The same uid gives the same result
 * for the same key. CP_ERR_INVALID for an empty uid.
 */
cp_status film_deident_uid(const film_deident *d, const char *uid,
                           char out[FILM_DEIDENT_UID_MAX + 1], cp_error *err);

/*
 * Reads the Part 10 file at path and writes its de-identified Part 10 form
 * to sink, in the file's own transfer syntax, streaming the pixel data
 * rather than holding it. The meta group is rebuilt with the replaced SOP
 * Instance UID; (0012,0062) Patient Identity Removed is "YES" and (0012,0063)
 * De-identification Method names the profile. Attributes the profile
 * removes are absent from the output (in nested sequences too); private
 * elements are removed. CP_ERR_MALFORMED for a file that cannot be read;
 * sink failures are returned as the sink gave them.
 */
cp_status film_deident_file(const film_deident *d, const char *path, const dcm_sink *sink,
                            cp_error *err);

#endif
