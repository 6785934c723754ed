/*
 * pattern.h - the file names an export writes: a pattern such as
 * "{PatientID}/{AccessionNumber}_{StudyDate}/{SeriesNumber}/{SOPInstanceUID}.dcm"
 * filled from an instance's index row. Every field is made safe for a file
 * name on Windows and POSIX shares alike: no '/', '\\', "..", control
 * characters or characters Windows reserves (<>:"|?*), no trailing dot or
 * space, no reserved device name (CON, NUL, COM1...), at most
 * INGEST_FIELD_MAX bytes, never empty. The keywords are those of PS3.6
 * for the attributes the index keeps.
 */
#ifndef CP_INGEST_PATTERN_H
#define CP_INGEST_PATTERN_H

#include <stddef.h>

#include "core/status.h"
#include "index/index.h"

/* The default export pattern. */
#define PATTERN_DEFAULT \
    "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"

/*
 * Checks a pattern: every {Field} known, braces balanced, no absolute path,
 * no "." or ".." component, no backslash, no empty component.
 */
cp_status pattern_check(const char *pattern, cp_error *err);

/*
 * Writes the safe form of one value into out (size > INGEST_FIELD_MAX);
 * "_" for an empty value. Returns the length written.
 */
size_t pattern_sanitize(const char *value, char *out, size_t size);

/* Fills pattern from row (an instance-level index row) into out. */
cp_status pattern_expand(const char *pattern, const index_row *row, char *out, size_t size,
                         cp_error *err);

#endif
