/*
 * json.c - the DICOM JSON model of PS3.18 Annex F, written as a stream.
 *
 * Each element becomes one attribute object keyed by its tag as eight upper
 * case hex digits (F.2.2), with its "vr" (F.2.3) and at most one of "Value"
 * (F.2.4), "InlineBinary" (F.2.7) or "BulkDataURI" (F.2.6). Text is decoded
 * to UTF-8 as a whole before it is split on `\` (F.2.4 and PS3.5 6.1.2.3),
 * empty values of multi-valued elements become null (F.2.5), person names
 * become objects of their component groups, and DS, IS, SV and UV are JSON
 * numbers unless a number would lose the value, in which case F.2.3 lets
 * them be strings.
 *
 * Output goes through a small buffer to the caller's sink; no part of the
 * document is kept beyond that buffer and the one value being written.
 */
#include "dicom/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dict.h"
#include "dicom/tag.h"
#include "dicom/vr.h"

/* Bytes gathered before each write to the sink. */
#define JSON_OUT_SIZE 8192

/*
 * Bytes of a value not in memory read per pread when it is inlined: a
 * multiple of 24, so that every chunk holds whole base64 groups (3 bytes)
 * and whole byte-swap units (up to 8 bytes).
 */
#define JSON_READ_CHUNK (24u * 2048)

/* Bytes swapped at a time on the stack: also a multiple of 24. */
#define JSON_SWAP_CHUNK (24u * 128)

/* Tags from the top data set down to the element being written. */
#define JSON_PATH_MAX (DCM_SEQUENCE_DEPTH_MAX + 2)

/* 2^53: integers beyond it do not survive a trip through an IEEE double. */
#define JSON_SAFE_INTEGER_MAX (UINT64_C(1) << 53)

typedef struct json_writer {
    const dcm_sink *sink;
    const dcm_json_options *opts;
    cp_error *err;
    /*
     * The first failure of the sink. Output primitives stop writing once it
     * is set, and the element loop checks it after each element, so that
     * every single byte written needs no check of its own.
     */
    cp_status status;
    int depth;                  /* indentation level in pretty mode */
    uint32_t path[JSON_PATH_MAX];
    size_t path_len;
    cp_buf text;                /* the decoded UTF-8 of the value being written */
    cp_buf raw;                 /* a value read from the source */
    cp_buf uri;
    size_t out_len;
    uint8_t out[JSON_OUT_SIZE];
} json_writer;

static const dcm_json_options json_defaults = {
    .inline_max = SIZE_MAX,
    .bulk_uri = NULL,
    .bulk_uri_ctx = NULL,
    .source = NULL,
    .charset_policy = NULL,
    .pretty = false,
    .skip_group_length = true,
};

static cp_status write_dataset(json_writer *w, const dcm_dataset *ds, dcm_charset *cs);

/* --- output primitives ------------------------------------------------- */

static void out_flush(json_writer *w)
{
    if (w->status == CP_OK && w->out_len > 0)
        w->status = dcm_sink_write(w->sink, w->out, w->out_len);
    w->out_len = 0;
}

static void out_bytes(json_writer *w, const void *data, size_t len)
{
    const uint8_t *p = data;

    while (len > 0 && w->status == CP_OK) {
        size_t room = JSON_OUT_SIZE - w->out_len;
        size_t n = len < room ? len : room;

        memcpy(w->out + w->out_len, p, n);
        w->out_len += n;
        p += n;
        len -= n;
        if (w->out_len == JSON_OUT_SIZE)
            out_flush(w);
    }
}

static void out_char(json_writer *w, char c)
{
    if (w->out_len == JSON_OUT_SIZE)
        out_flush(w);
    if (w->status == CP_OK)
        w->out[w->out_len++] = (uint8_t)c;
}

static void out_str(json_writer *w, const char *s)
{
    out_bytes(w, s, strlen(s));
}

static void out_newline(json_writer *w)
{
    if (!w->opts->pretty)
        return;
    out_char(w, '\n');
    for (int i = 0; i < w->depth; i++)
        out_bytes(w, "  ", 2);
}

/* Starts the next member of an object or array: a comma after the first. */
static void out_next(json_writer *w, bool *first)
{
    if (!*first)
        out_char(w, ',');
    *first = false;
    out_newline(w);
}

static void out_open(json_writer *w, char c)
{
    out_char(w, c);
    w->depth++;
}

static void out_close(json_writer *w, char c, bool empty)
{
    w->depth--;
    if (!empty)
        out_newline(w);
    out_char(w, c);
}

/* Writes `"name":` (with a space in pretty mode). */
static void out_key(json_writer *w, const char *name)
{
    out_char(w, '"');
    out_str(w, name);
    out_str(w, w->opts->pretty ? "\": " : "\":");
}

/*
 * Length of the valid UTF-8 sequence at s (at most len bytes), or 0 when
 * the bytes there are not one (overlong forms, surrogates and code points
 * above U+10FFFF included).
 */
static size_t utf8_sequence(const uint8_t *s, size_t len)
{
    uint32_t cp;
    size_t n;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        n = 2, cp = s[0] & 0x1Fu;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        n = 3, cp = s[0] & 0x0Fu;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        n = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (n > len)
        return 0;

    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/*
 * Writes UTF-8 text as a JSON string (RFC 8259 section 7). The decoder never
 * gives invalid UTF-8, but a stray byte becomes U+FFFD rather than invalid
 * JSON all the same.
 */
static void out_string(json_writer *w, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *s = (const uint8_t *)text;
    size_t run = 0;     /* start of the bytes not yet written */
    size_t i = 0;

    out_char(w, '"');
    while (i < len) {
        uint8_t c = s[i];
        size_t n = utf8_sequence(s + i, len - i);

        if (n > 1 || (n == 1 && c >= 0x20 && c != '"' && c != '\\')) {
            i += n;
            continue;
        }

        out_bytes(w, s + run, i - run);
        if (n == 0) {
            out_str(w, "\xEF\xBF\xBD");
        } else if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };

            out_bytes(w, esc, 2);
        } else if (c == '\n') {
            out_str(w, "\\n");
        } else if (c == '\r') {
            out_str(w, "\\r");
        } else if (c == '\t') {
            out_str(w, "\\t");
        } else {
            char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

            out_bytes(w, esc, 6);
        }
        i++;
        run = i;
    }
    out_bytes(w, s + run, len - run);
    out_char(w, '"');
}

/* Base64 (RFC 4648 section 4) of len bytes; len is a multiple of 3 except at the end. */
static void out_base64(json_writer *w, const uint8_t *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char quad[4];

    for (size_t i = 0; i < len; i += 3) {
        size_t left = len - i;
        uint32_t v = (uint32_t)data[i] << 16;

        if (left > 1)
            v |= (uint32_t)data[i + 1] << 8;
        if (left > 2)
            v |= data[i + 2];
        quad[0] = alphabet[(v >> 18) & 63];
        quad[1] = alphabet[(v >> 12) & 63];
        quad[2] = left > 1 ? alphabet[(v >> 6) & 63] : '=';
        quad[3] = left > 2 ? alphabet[v & 63] : '=';
        out_bytes(w, quad, 4);
    }
}

/* --- reading values ---------------------------------------------------- */

static uint64_t load_uint(const uint8_t *p, size_t size, bool big_endian)
{
    uint64_t v = 0;

    for (size_t i = 0; i < size; i++) {
        size_t k = big_endian ? i : size - 1 - i;

        v = (v << 8) | p[k];
    }
    return v;
}

/*
 * The bytes of a value that is to be written in full: in memory already, or
 * read from the source into w->raw. A value that the input cut short and
 * that was never loaded is treated as empty: there is nothing to read.
 */
static cp_status value_bytes(json_writer *w, const dcm_element *el, const uint8_t **data,
                             size_t *len)
{
    cp_status st;

    if ((el->flags & DCM_ELEMENT_NOT_LOADED) == 0 || el->value != NULL) {
        *data = el->value;
        *len = el->value != NULL ? (size_t)el->value_length : 0;
        return CP_OK;
    }

    *data = NULL;
    *len = 0;
    if ((el->flags & DCM_ELEMENT_TRUNCATED) != 0)
        return CP_OK;
    if (w->opts->source == NULL)
        return cp_error_set(w->err, CP_ERR_INVALID, (int64_t)el->offset, el->tag,
                            "the value was not loaded and no source was given to read it");

    cp_buf_reset(&w->raw);
    st = dcm_element_read_value(el, w->opts->source, &w->raw, w->err);
    if (st != CP_OK)
        return st;
    *data = w->raw.data;
    *len = w->raw.len;
    return CP_OK;
}

/* --- the VR written ---------------------------------------------------- */

/* The nearest data set from ds upwards holding `tag`, and that element. */
static const dcm_element *find_upwards(const dcm_dataset *ds, uint32_t tag,
                                       const dcm_dataset **where)
{
    for (; ds != NULL; ds = dcm_dataset_parent(ds)) {
        const dcm_element *el = dcm_dataset_get(ds, tag);

        if (el != NULL) {
            *where = ds;
            return el;
        }
    }
    return NULL;
}

/* The first value of a US element found from ds upwards, or `otherwise`. */
static uint64_t first_us(const dcm_dataset *ds, uint32_t tag, uint64_t otherwise)
{
    const dcm_dataset *where = NULL;
    const dcm_element *el = find_upwards(ds, tag, &where);

    if (el == NULL || el->value == NULL || el->value_length < 2)
        return otherwise;
    return load_uint(el->value, 2, dcm_dataset_big_endian(where));
}

/*
 * The VR to write. Under implicit VR the dictionary gives the ambiguous
 * ones ("US or SS", "OB or OW", "US or OW") as their first choice; the JSON
 * model needs the one meant (PS3.5 A.1 and PS3.3 C.7.6.3, C.11.1.1), found
 * the way pydicom and DCMTK find it so that their output agrees with ours.
 */
static dcm_vr json_vr(const dcm_dataset *ds, const dcm_element *el)
{
    const dcm_dict_entry *entry;

    if (el->items != NULL)
        return DCM_VR_SQ;
    if (el->vr == DCM_VR_NONE)
        return DCM_VR_UN;
    if ((el->flags & DCM_ELEMENT_VR_FROM_DICTIONARY) == 0 ||
        (el->flags & DCM_ELEMENT_ENCAPSULATED) != 0)
        return el->vr;
    entry = dcm_dict_lookup(el->tag);
    if (entry == NULL || entry->vr_alt == DCM_VR_NONE)
        return el->vr;

    if (el->vr == DCM_VR_US && entry->vr_alt == DCM_VR_SS)
        return first_us(ds, DCM_TAG(0x0028, 0x0103), 0) == 1 ? DCM_VR_SS : DCM_VR_US;
    if (el->vr == DCM_VR_OB && entry->vr_alt == DCM_VR_OW)
        return DCM_VR_OW;
    if (el->vr == DCM_VR_US && entry->vr_alt == DCM_VR_OW)
        return first_us(ds, DCM_TAG(0x0028, 0x3002), 0) == 1 ? DCM_VR_US : DCM_VR_OW;
    return el->vr;
}

static bool vr_is_binary(dcm_vr vr)
{
    return dcm_vr_is_bulk(vr) || vr == DCM_VR_NONE;
}

/* --- numbers ----------------------------------------------------------- */

/* The shortest of %.15g, %.16g, %.17g that reads back as v. */
static void format_double(double v, char *out, size_t size)
{
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(out, size, "%.*g", precision, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void out_double(json_writer *w, double v)
{
    char text[40];

    if (isnan(v)) {
        out_str(w, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        out_str(w, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    format_double(v, text, sizeof(text));
    out_str(w, text);
}

/*
 * A decimal string (DS, or IS) rewritten as a JSON number (RFC 8259 section
 * 6): "+.5" becomes "0.5", "007" becomes "7", "1." becomes "1"; the digits
 * themselves are kept, so that no precision is lost. Returns false when the
 * text is no decimal number, or one too large for an IEEE double, or (for
 * integers with no fraction) too large for the 64-bit integers most JSON
 * readers use, in which case the caller writes it as a string.
 */
static bool decimal_to_json(const char *s, size_t len, bool integer_vr, char *out, size_t size)
{
    size_t i = 0, o = 0, int_start, int_end, frac_start, frac_end = 0, exp_start = 0;
    bool negative = false;

    if (len + 4 > size)
        return false;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        negative = s[i++] == '-';
    int_start = i;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    int_end = i;
    frac_start = i;
    if (i < len && s[i] == '.') {
        frac_start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    frac_end = i;
    if (int_end == int_start && frac_end == frac_start)
        return false;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        exp_start = i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i == len || s[i] < '0' || s[i] > '9')
            return false;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i != len)
        return false;

    if (negative)
        out[o++] = '-';
    while (int_start + 1 < int_end && s[int_start] == '0')
        int_start++;
    if (int_start == int_end)
        out[o++] = '0';
    memcpy(out + o, s + int_start, int_end - int_start);
    o += int_end - int_start;
    if (frac_end > frac_start) {
        out[o++] = '.';
        memcpy(out + o, s + frac_start, frac_end - frac_start);
        o += frac_end - frac_start;
    }
    if (exp_start != 0) {
        memcpy(out + o, s + exp_start, len - exp_start);
        o += len - exp_start;
    }
    out[o] = '\0';

    if (exp_start == 0 && frac_end <= frac_start && int_end - int_start > 18) {
        if (integer_vr)
            return false;
        if (o + 3 > size)
            return false;
        memcpy(out + o, ".0", 3);
    }
    return !isinf(strtod(out, NULL));
}

/* --- element values ---------------------------------------------------- */

static bool is_trim_byte(char c)
{
    return c == ' ' || c == '\0';
}

/*
 * Removes the padding dcm_element_get_string removes: trailing spaces and
 * NULs always, leading spaces except for the text VRs (PS3.5 table 6.2-1).
 */
static void trim_value(dcm_vr vr, const char **text, size_t *len)
{
    const char *s = *text;
    size_t n = *len;

    while (n > 0 && is_trim_byte(s[n - 1]))
        n--;
    if (vr != DCM_VR_LT && vr != DCM_VR_ST && vr != DCM_VR_UT && vr != DCM_VR_UR) {
        while (n > 0 && s[0] == ' ') {
            s++;
            n--;
        }
    }
    *text = s;
    *len = n;
}

/* The next `\`-separated value of text after *pos; false past the last one. */
static bool next_value(dcm_vr vr, const char *text, size_t len, size_t *pos, bool *done,
                       const char **value, size_t *value_len)
{
    const char *sep;
    size_t start = *pos;

    if (*done)
        return false;
    sep = dcm_vr_is_multi_valued_string(vr) ? memchr(text + start, '\\', len - start) : NULL;
    if (sep == NULL) {
        *value_len = len - start;
        *done = true;
    } else {
        *value_len = (size_t)(sep - (text + start));
        *pos = start + *value_len + 1;
    }
    *value = text + start;
    trim_value(vr, value, value_len);
    return true;
}

static void out_person_name(json_writer *w, const char *text, size_t len)
{
    dcm_person_name pn;
    bool first = true;

    dcm_person_name_split(text, len, &pn);
    out_open(w, '{');
    if (pn.alphabetic_len > 0) {
        out_next(w, &first);
        out_key(w, "Alphabetic");
        out_string(w, pn.alphabetic, pn.alphabetic_len);
    }
    if (pn.ideographic_len > 0) {
        out_next(w, &first);
        out_key(w, "Ideographic");
        out_string(w, pn.ideographic, pn.ideographic_len);
    }
    if (pn.phonetic_len > 0) {
        out_next(w, &first);
        out_key(w, "Phonetic");
        out_string(w, pn.phonetic, pn.phonetic_len);
    }
    out_close(w, '}', first);
}

static void out_string_value(json_writer *w, dcm_vr vr, const char *value, size_t len)
{
    char number[96];

    if (len == 0) {
        out_str(w, "null");
    } else if (vr == DCM_VR_PN) {
        out_person_name(w, value, len);
    } else if ((vr == DCM_VR_DS || vr == DCM_VR_IS) &&
               decimal_to_json(value, len, vr == DCM_VR_IS, number, sizeof(number))) {
        out_str(w, number);
    } else {
        out_string(w, value, len);
    }
}

/* Writes `"Value": [...]` for a string VR, or nothing when the value is empty. */
static cp_status write_strings(json_writer *w, dcm_charset *cs, const dcm_element *el,
                               dcm_vr vr, const uint8_t *data, size_t len, bool *first)
{
    const char *text, *value;
    size_t text_len, value_len, pos = 0;
    bool done = false, first_value = true;
    cp_status st;

    cp_buf_reset(&w->text);
    st = dcm_charset_decode(cs, vr, data, len, &w->text, NULL);
    if (st != CP_OK)
        return cp_error_set(w->err, st, (int64_t)el->offset, el->tag,
                            "the text could not be decoded");
    text = (const char *)w->text.data;
    text_len = w->text.len;

    /* A value of padding alone is no value at all (F.2.5: no "Value"). */
    if (text == NULL || (next_value(vr, text, text_len, &pos, &done, &value, &value_len) &&
                         value_len == 0 && done))
        return CP_OK;
    pos = 0;
    done = false;

    out_next(w, first);
    out_key(w, "Value");
    out_open(w, '[');
    while (next_value(vr, text, text_len, &pos, &done, &value, &value_len)) {
        out_next(w, &first_value);
        out_string_value(w, vr, value, value_len);
    }
    out_close(w, ']', first_value);
    return CP_OK;
}

static void out_number_value(json_writer *w, dcm_vr vr, const uint8_t *p, bool big_endian)
{
    size_t size = dcm_vr_numeric_size(vr);
    uint64_t u = load_uint(p, size, big_endian);
    char text[40];

    switch (vr) {
    case DCM_VR_AT:
        snprintf(text, sizeof(text), "\"%04X%04X\"", (unsigned)load_uint(p, 2, big_endian),
                 (unsigned)load_uint(p + 2, 2, big_endian));
        break;
    case DCM_VR_FL: {
        uint32_t bits = (uint32_t)u;
        float f;

        memcpy(&f, &bits, sizeof(f));
        out_double(w, (double)f);
        return;
    }
    case DCM_VR_FD: {
        double d;

        memcpy(&d, &u, sizeof(d));
        out_double(w, d);
        return;
    }
    case DCM_VR_SS:
        snprintf(text, sizeof(text), "%d", (int)(int16_t)(uint16_t)u);
        break;
    case DCM_VR_SL:
        snprintf(text, sizeof(text), "%ld", (long)(int32_t)(uint32_t)u);
        break;
    case DCM_VR_SV: {
        int64_t v = (int64_t)u;
        bool safe = v >= -(int64_t)JSON_SAFE_INTEGER_MAX && v <= (int64_t)JSON_SAFE_INTEGER_MAX;

        snprintf(text, sizeof(text), safe ? "%lld" : "\"%lld\"", (long long)v);
        break;
    }
    case DCM_VR_UV:
        snprintf(text, sizeof(text), u <= JSON_SAFE_INTEGER_MAX ? "%llu" : "\"%llu\"",
                 (unsigned long long)u);
        break;
    default:
        snprintf(text, sizeof(text), "%llu", (unsigned long long)u);
        break;
    }
    out_str(w, text);
}

/* Writes `"Value": [...]` for a binary numeric VR, or nothing when empty. */
static void write_numbers(json_writer *w, dcm_vr vr, const uint8_t *data, size_t len,
                          bool big_endian, bool *first)
{
    size_t size = dcm_vr_numeric_size(vr);
    size_t count = len / size;
    bool first_value = true;

    if (count == 0)
        return;
    out_next(w, first);
    out_key(w, "Value");
    out_open(w, '[');
    for (size_t i = 0; i < count; i++) {
        out_next(w, &first_value);
        out_number_value(w, vr, data + i * size, big_endian);
    }
    out_close(w, ']', first_value);
}

/* Base64 of bytes in memory, swapped to little endian on the way (F.2.7). */
static void out_binary_chunk(json_writer *w, const uint8_t *data, size_t len, size_t unit)
{
    uint8_t swapped[JSON_SWAP_CHUNK];

    if (unit <= 1) {
        out_base64(w, data, len);
        return;
    }
    for (size_t done = 0; done < len;) {
        size_t n = len - done < JSON_SWAP_CHUNK ? len - done : JSON_SWAP_CHUNK;

        for (size_t i = 0; i < n; i++) {
            size_t unit_start = i - i % unit;

            /* A last partial unit (a malformed length) is left as it is. */
            if (unit_start + unit > n)
                swapped[i] = data[done + i];
            else
                swapped[i] = data[done + unit_start + (unit - 1 - i % unit)];
        }
        out_base64(w, swapped, n);
        done += n;
    }
}

/* InlineBinary of a value not in memory, read in pieces so that no limit applies. */
static cp_status out_binary_from_source(json_writer *w, const dcm_element *el, size_t unit)
{
    cp_status st;

    cp_buf_reset(&w->raw);
    st = cp_buf_reserve(&w->raw, JSON_READ_CHUNK);
    if (st != CP_OK)
        return cp_error_set(w->err, st, CP_ERROR_NO_OFFSET, el->tag, "no memory for a value");

    for (uint64_t done = 0; done < el->value_length;) {
        uint64_t left = el->value_length - done;
        size_t want = left < JSON_READ_CHUNK ? (size_t)left : JSON_READ_CHUNK;
        size_t got = 0;

        st = dcm_source_pread(w->opts->source, el->offset + done, w->raw.data, want, &got);
        if (st != CP_OK)
            return cp_error_set(w->err, st, (int64_t)(el->offset + done), el->tag,
                                "the value could not be read from the source");
        if (got != want)
            return cp_error_set(w->err, CP_ERR_TRUNCATED, (int64_t)(el->offset + done),
                                el->tag, "the source ends inside the value");
        out_binary_chunk(w, w->raw.data, want, unit);
        done += want;
    }
    return CP_OK;
}

/* Asks the hook for a BulkDataURI; CP_ERR_NOT_FOUND leaves the value out. */
static cp_status write_bulk_uri(json_writer *w, const dcm_element *el, bool *first)
{
    cp_status st;

    if (w->opts->bulk_uri == NULL)
        return CP_OK;
    cp_buf_reset(&w->uri);
    st = w->opts->bulk_uri(w->opts->bulk_uri_ctx, el, w->path, w->path_len, &w->uri);
    if (st == CP_ERR_NOT_FOUND)
        return CP_OK;
    if (st != CP_OK)
        return cp_error_set(w->err, st, (int64_t)el->offset, el->tag,
                            "the bulk data URI could not be made");

    out_next(w, first);
    out_key(w, "BulkDataURI");
    out_string(w, (const char *)w->uri.data, w->uri.len);
    return CP_OK;
}

/*
 * OB, OD, OF, OL, OV, OW, UN: InlineBinary up to inline_max bytes (any size
 * when read from a deflated data set), else a BulkDataURI. PS3.18 says nothing of encapsulated pixel data inline (its
 * fragments are no plain octet stream), so that is always bulk data.
 */
static cp_status write_binary(json_writer *w, const dcm_dataset *ds, const dcm_element *el,
                              dcm_vr vr, bool *first)
{
    bool big_endian = dcm_dataset_big_endian(ds);
    size_t unit = big_endian ? dcm_vr_swap_unit(vr) : 1;
    bool truncated_unread = (el->flags & DCM_ELEMENT_TRUNCATED) != 0 && el->value == NULL;
    cp_status st = CP_OK;

    if ((el->flags & DCM_ELEMENT_ENCAPSULATED) != 0)
        return write_bulk_uri(w, el, first);
    if (el->value_length == 0 || truncated_unread)
        return CP_OK;
    /* A bulk-data URI could only name bytes of the file, which holds these deflated. */
    if (el->value_length > w->opts->inline_max && (el->flags & DCM_ELEMENT_INFLATED) == 0)
        return write_bulk_uri(w, el, first);
    if (el->value == NULL && w->opts->source == NULL)
        return cp_error_set(w->err, CP_ERR_INVALID, (int64_t)el->offset, el->tag,
                            "the value was not loaded and no source was given to read it");

    out_next(w, first);
    out_key(w, "InlineBinary");
    out_char(w, '"');
    if (el->value != NULL)
        out_binary_chunk(w, el->value, (size_t)el->value_length, unit);
    else
        st = out_binary_from_source(w, el, unit);
    out_char(w, '"');
    return st;
}

static cp_status write_sequence(json_writer *w, const dcm_element *el, dcm_charset *cs,
                                bool *first)
{
    bool first_item = true;
    cp_status st;

    if (el->item_count == 0)
        return CP_OK;
    out_next(w, first);
    out_key(w, "Value");
    out_open(w, '[');
    for (uint32_t i = 0; i < el->item_count; i++) {
        out_next(w, &first_item);
        st = write_dataset(w, el->items[i], cs);
        if (st != CP_OK)
            return st;
    }
    out_close(w, ']', first_item);
    return CP_OK;
}

static cp_status write_element(json_writer *w, const dcm_dataset *ds, const dcm_element *el,
                               dcm_charset *cs)
{
    dcm_vr vr = json_vr(ds, el);
    const uint8_t *data;
    size_t len;
    bool first = true;
    char key[12];
    cp_status st;

    snprintf(key, sizeof(key), "%08X", (unsigned)el->tag);
    out_key(w, key);
    out_open(w, '{');
    out_next(w, &first);
    out_key(w, "vr");
    out_char(w, '"');
    out_str(w, dcm_vr_name(vr));
    out_char(w, '"');

    if (w->path_len >= JSON_PATH_MAX)
        return cp_error_set(w->err, CP_ERR_LIMIT, (int64_t)el->offset, el->tag,
                            "sequences nested deeper than %d", DCM_SEQUENCE_DEPTH_MAX);
    w->path[w->path_len++] = el->tag;

    if (vr == DCM_VR_SQ) {
        st = write_sequence(w, el, cs, &first);
    } else if (vr_is_binary(vr) || (el->flags & DCM_ELEMENT_ENCAPSULATED) != 0) {
        st = write_binary(w, ds, el, vr, &first);
    } else {
        st = value_bytes(w, el, &data, &len);
        if (st == CP_OK && dcm_vr_numeric_size(vr) > 0)
            write_numbers(w, vr, data, len, dcm_dataset_big_endian(ds), &first);
        else if (st == CP_OK && len > 0)
            st = write_strings(w, cs, el, vr, data, len, &first);
    }
    w->path_len--;
    if (st != CP_OK)
        return st;

    out_close(w, '}', false);
    return w->status;
}

/* --- data sets --------------------------------------------------------- */

typedef struct json_order {
    uint32_t tag;
    size_t index;
} json_order;

static int order_compare(const void *a, const void *b)
{
    const json_order *x = a, *y = b;

    if (x->tag != y->tag)
        return x->tag < y->tag ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index ? 1 : 0);
}

/*
 * F.2.2 wants the attributes in ascending tag order. A data set read from a
 * conforming stream already is; a malformed one gets an index sorted here
 * (stable, so that a repeated tag keeps its stream order). *order stays NULL
 * when the stream order will do.
 */
static cp_status sort_elements(const dcm_dataset *ds, json_order **order, cp_error *err)
{
    size_t count = dcm_dataset_count(ds);
    json_order *o;
    bool sorted = true;

    *order = NULL;
    for (size_t i = 1; i < count && sorted; i++)
        sorted = dcm_dataset_at(ds, i - 1)->tag <= dcm_dataset_at(ds, i)->tag;
    if (sorted)
        return CP_OK;
    if (count > DCM_DATASET_ELEMENTS_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%zu elements in one data set", count);

    o = cp_calloc(count, sizeof(*o));
    if (o == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no memory to sort %zu elements", count);
    for (size_t i = 0; i < count; i++) {
        o[i].tag = dcm_dataset_at(ds, i)->tag;
        o[i].index = i;
    }
    qsort(o, count, sizeof(*o), order_compare);
    *order = o;
    return CP_OK;
}

/*
 * Writes ds as an object. `inherited` decodes its text unless ds, an item,
 * has a Specific Character Set of its own (PS3.5 C.12.1.1.2), which then
 * gets a decoder for the item and the items below it.
 */
static cp_status write_dataset(json_writer *w, const dcm_dataset *ds, dcm_charset *inherited)
{
    dcm_charset *own = NULL;
    dcm_charset *cs = inherited;
    json_order *order = NULL;
    size_t count = dcm_dataset_count(ds);
    bool first = true;
    cp_status st;

    if (dcm_dataset_parent(ds) != NULL &&
        dcm_dataset_get(ds, DCM_TAG_SPECIFIC_CHARACTER_SET) != NULL) {
        const uint8_t *value;
        size_t len;

        dcm_dataset_charset(ds, &value, &len);
        st = dcm_charset_create(value, len, w->opts->charset_policy, &own, w->err);
        if (st != CP_OK)
            return st;
        cs = own;
    }
    st = sort_elements(ds, &order, w->err);
    if (st != CP_OK)
        goto done;

    out_open(w, '{');
    for (size_t i = 0; i < count; i++) {
        const dcm_element *el = dcm_dataset_at(ds, order != NULL ? order[i].index : i);

        if (w->opts->skip_group_length && dcm_tag_is_group_length(el->tag))
            continue;
        out_next(w, &first);
        st = write_element(w, ds, el, cs);
        if (st != CP_OK)
            goto done;
    }
    out_close(w, '}', first);
    st = w->status;

done:
    cp_free(order);
    if (own != NULL)
        dcm_charset_destroy(own);
    return st;
}

cp_status dcm_json_write_dataset(const dcm_dataset *ds, const dcm_json_options *opts,
                                 const dcm_sink *sink, cp_error *err)
{
    json_writer *w;
    dcm_charset *cs = NULL;
    const uint8_t *value;
    size_t len;
    cp_status st;

    if (ds == NULL || sink == NULL || sink->write == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no data set or no sink");
    w = cp_calloc(1, sizeof(*w));
    if (w == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no memory for the JSON writer");
    w->sink = sink;
    w->opts = opts != NULL ? opts : &json_defaults;
    w->err = err;
    cp_buf_init(&w->text);
    cp_buf_init(&w->raw);
    cp_buf_init(&w->uri);

    dcm_dataset_charset(ds, &value, &len);
    st = dcm_charset_create(value, len, w->opts->charset_policy, &cs, err);
    if (st != CP_OK)
        goto done;

    st = write_dataset(w, ds, cs);
    out_flush(w);
    if (st == CP_OK && w->status != CP_OK)
        st = cp_error_set(err, w->status, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "the JSON output could not be written");

done:
    if (cs != NULL)
        dcm_charset_destroy(cs);
    cp_buf_free(&w->text);
    cp_buf_free(&w->raw);
    cp_buf_free(&w->uri);
    cp_free(w);
    return st;
}
