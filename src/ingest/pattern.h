/*
 * pattern.h - the file names an export writes: a pattern such as
 * "{PatientID}/{AccessionNumber}_{StudyDate}/{SeriesNumber}/{SOPInstanceUID}.dcm"
 * filled from an instance's index row. Every field is made safe for a file
 * name on Windows and POSIX shares alike: no '/', '\\', "..", control
 * characters or characters Windows reserves (<>:"|?*), no trailing dot or
 * space, no reserved device name (CON, NUL, COM1...), at most
 * INGEST_FIELD_MAX bytes, never empty. The keywords are those of PS3.6
 * for the attributes the index keeps, plus {OrderID}: the reading order
 * whose release a report_released rule exports ("_" without one).
 */
#ifndef CP_INGEST_PATTERN_H
#define CP_INGEST_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* The default name of a released report's PDF (report_released rules). */
#define PATTERN_PDF_DEFAULT "{PatientID}/{StudyInstanceUID}/report-{OrderID}.pdf"

/* Fills pattern from row (an instance-level index row) into out. */
cp_status pattern_expand(const char *pattern, const index_row *row, char *out, size_t size,
                         cp_error *err);

/* The same, with order_id for {OrderID} (0: none). */
cp_status pattern_expand_order(const char *pattern, const index_row *row, int64_t order_id,
                               char *out, size_t size, cp_error *err);

/* Whether a checked pattern has the field {keyword}. */
bool pattern_uses(const char *pattern, const char *keyword);

/* Whether it has a field below the study level (series or instance), which a PDF lacks. */
bool pattern_instance_level(const char *pattern);

#endif
