/*
 * charset.h - Specific Character Set (0008,0005) to UTF-8 (PS3.5 section 6.1
 * and Annex J; PS3.3 C.12.1.1.2), and person names (PS3.5 6.2.1).
 *
 * Supported: ISO_IR 6 (default), the single-byte sets ISO_IR 100, 101, 109,
 * 110, 144, 127, 126, 138, 148, 13 and 166, ISO_IR 192 (UTF-8), GB18030,
 * GBK, and the ISO 2022 code extensions (ISO 2022 IR 6, 87, 159, 149, 58, 13
 * and the single-byte ones) switched by escape sequences. iconv does the
 * conversions.
 *
 * A value is decoded as a whole before it is split on `\`, `^` and `=`,
 * because GBK and GB18030 trail bytes include 0x5C and 0x5E.
 *
 * Text from the field is often mislabelled. When detection is on, the decoder
 * checks that the bytes fit the declared set and, if they do not, decodes
 * them as the likeliest Chinese set and says so in its flags:
 *   - ISO_IR 192 declared but the bytes are not UTF-8: tried as GB18030;
 *   - ISO_IR 100 (or another single-byte set) declared, but the high bytes
 *     form valid GB18030 double-byte characters: decoded as GB18030;
 *   - no 0008,0005 but non-ASCII bytes: valid UTF-8 is taken as UTF-8, else
 *     GB18030 is tried, else ISO_IR 100.
 * The original bytes are never changed; only the decoded text differs.
 */
#ifndef DCM_CHARSET_H
#define DCM_CHARSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"
#include "dicom/vr.h"

enum {
    /* 0008,0005 was absent and non-ASCII text was decoded by guessing. */
    DCM_CHARSET_GUESSED = 1u << 0,
    /* The bytes did not fit the declared set; another set decoded them. */
    DCM_CHARSET_MISLABELLED = 1u << 1,
    /* Some bytes fitted no set and became U+FFFD. */
    DCM_CHARSET_REPLACED = 1u << 2,
    /* The configured override was used instead of the declared set. */
    DCM_CHARSET_OVERRIDDEN = 1u << 3,
    /* 0008,0005 named a term this code does not know; it was treated as ISO_IR 6 plus detection. */
    DCM_CHARSET_UNKNOWN_TERM = 1u << 4,
};

/* What a sending source configures (per AE title, per folder, per institution). */
typedef struct dcm_charset_policy {
    /* Defined Term assumed when 0008,0005 is absent ("GB18030"); NULL: ISO_IR 6 plus detection. */
    const char *default_charset;
    /* Defined Term used instead of whatever 0008,0005 says; NULL: none. */
    const char *override_charset;
    /* Detect mislabelled text as described above. */
    bool detect;
} dcm_charset_policy;

typedef struct dcm_charset dcm_charset;

/*
 * A decoder for the Specific Character Set whose raw value is `len` bytes at
 * `value` (backslash-separated Defined Terms, padding allowed); value NULL
 * or len 0 when the data set has none. policy NULL means detection on with
 * no default and no override. A decoder is not thread-safe: use one per
 * thread. Unknown terms are not an error (see DCM_CHARSET_UNKNOWN_TERM).
 */
cp_status dcm_charset_create(const uint8_t *value, size_t len, const dcm_charset_policy *policy,
                             dcm_charset **out, cp_error *err);

void dcm_charset_destroy(dcm_charset *cs);

/*
 * Appends to out the UTF-8 text of a value of `vr` given as `len` raw bytes
 * (all its values, separators kept as `\`, padding kept). VRs that do not
 * follow the character set (CS, UI, DA, ...) are decoded as ISO_IR 6, with
 * bytes above 0x7F taken as ISO_IR 100. Adds DCM_CHARSET_* bits to *flags
 * when flags is not NULL. Fails only on CP_ERR_NOMEM or CP_ERR_LIMIT: bytes
 * that decode under no set become U+FFFD.
 */
cp_status dcm_charset_decode(dcm_charset *cs, dcm_vr vr, const uint8_t *bytes, size_t len,
                             cp_buf *out, unsigned *flags);

/*
 * Appends to out `len` bytes of UTF-8 encoded in the character set named by
 * `term` (a Defined Term, "GB18030"), for answers to peers that want their own
 * set. CP_ERR_CHARSET when a character cannot be represented.
 */
cp_status dcm_charset_encode(const char *term, const char *utf8, size_t len, cp_buf *out);

/* Whether `term` (trailing spaces ignored) is a Defined Term this code decodes. */
bool dcm_charset_is_known(const char *term, size_t len);

/* The three component groups of one decoded person name (PS3.5 6.2.1.2). */
typedef struct dcm_person_name {
    const char *alphabetic;
    size_t alphabetic_len;
    const char *ideographic;
    size_t ideographic_len;
    const char *phonetic;
    size_t phonetic_len;
} dcm_person_name;

/*
 * Splits one decoded UTF-8 person name value (already split from its siblings
 * on `\`) into its groups on `=`; the slices point into utf8, with trailing
 * spaces removed. Missing groups are empty.
 */
void dcm_person_name_split(const char *utf8, size_t len, dcm_person_name *out);

#endif
