/*
 * dump.c - a readable listing of a DICOM file (see dump.h for the format).
 *
 * It walks the tree of PS3.5 section 7: elements in stream order, sequence
 * items (7.5) with their delimitation items where the stream had undefined
 * lengths, and the fragments of encapsulated pixel data (A.4), Basic Offset
 * Table first. Text follows Specific Character Set per data set and per item
 * (PS3.3 C.12.1.1.2) through charset.h. One line is built at a time and
 * handed to the sink; nothing else is kept.
 */
#include "dicom/dump.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "dicom/dict.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/vr.h"

typedef struct dump_ctx {
    const dcm_sink *sink;
    const dcm_dump_options *opts;
    size_t width;
    cp_error *err;
    cp_buf line;        /* the line being built */
    cp_buf text;        /* a decoded text value */
    cp_buf raw;         /* a value read from the source */
    /*
     * The first failure to grow the line. The pieces of a line are appended
     * unchecked and line_flush reports this once, instead of a check after
     * every piece.
     */
    cp_status line_status;
    unsigned flags;     /* DCM_CHARSET_* seen while decoding */
} dump_ctx;

static const dcm_dump_options dump_defaults = {
    .source = NULL,
    .charset_policy = NULL,
    .max_width = DCM_DUMP_WIDTH_DEFAULT,
    .show_meta = true,
};

static cp_status dump_dataset(dump_ctx *d, const dcm_dataset *ds, dcm_charset *inherited,
                              int depth);

/* --- lines ------------------------------------------------------------- */

static cp_status nomem(dump_ctx *d)
{
    return cp_error_set(d->err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "no memory for the listing");
}

static void add_bytes(dump_ctx *d, const void *data, size_t len)
{
    if (d->line_status == CP_OK)
        d->line_status = cp_buf_append(&d->line, data, len);
}

static void add_str(dump_ctx *d, const char *s)
{
    add_bytes(d, s, strlen(s));
}

static void add_byte(dump_ctx *d, char c)
{
    add_bytes(d, &c, 1);
}

static void addf(dump_ctx *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void addf(dump_ctx *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (d->line_status == CP_OK)
        d->line_status = cp_buf_vappendf(&d->line, fmt, ap);
    va_end(ap);
}

/* Sends the line built so far (plus a newline) to the sink and empties it. */
static cp_status line_flush(dump_ctx *d)
{
    cp_status st;

    add_byte(d, '\n');
    if (d->line_status != CP_OK)
        return nomem(d);
    st = dcm_sink_write(d->sink, d->line.data, d->line.len);
    cp_buf_reset(&d->line);
    if (st != CP_OK)
        return cp_error_set(d->err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the listing could not be written");
    return CP_OK;
}

static cp_status write_comment(dump_ctx *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static cp_status write_comment(dump_ctx *d, const char *fmt, ...)
{
    va_list ap;

    cp_buf_reset(&d->line);
    add_str(d, "# ");
    va_start(ap, fmt);
    if (d->line_status == CP_OK)
        d->line_status = cp_buf_vappendf(&d->line, fmt, ap);
    va_end(ap);
    return line_flush(d);
}

/* Starts a line: indentation, tag and VR. */
static void line_start(dump_ctx *d, int depth, uint32_t tag, const char *vr)
{
    cp_buf_reset(&d->line);
    for (int i = 0; i < depth; i++)
        add_str(d, "  ");
    addf(d, "(%04X,%04X) %s ", (unsigned)DCM_TAG_GROUP(tag),
                   (unsigned)DCM_TAG_ELEMENT(tag), vr);
}

/* Ends a line with "# length, VM name" and sends it. */
static cp_status line_end(dump_ctx *d, uint32_t length, bool truncated, const char *vm,
                          const char *name)
{
    if (length == DCM_UNDEFINED_LENGTH)
        add_str(d, " # u/l");
    else
        addf(d, " # %lu", (unsigned long)length);
    addf(d, "%s, %s %s", truncated ? " (truncated)" : "", vm, name);
    return line_flush(d);
}

/*
 * Appends UTF-8 text to the line, control characters shown as '.', until
 * `*used` reaches the width; true when the text had to be cut.
 */
static bool append_clipped(dump_ctx *d, const char *text, size_t len, size_t *used)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        size_t n = 1;

        if (*used >= d->width)
            return true;
        if (c >= 0xC0)
            while (i + n < len && ((unsigned char)text[i + n] & 0xC0) == 0x80 && n < 4)
                n++;
        if (c < 0x20 || c == 0x7F)
            add_byte(d, '.');
        else
            add_bytes(d, text + i, n);
        i += n;
        (*used)++;
    }
    return false;
}

/* The keyword of el: from the dictionary, the private dictionary, or a placeholder. */
static const char *element_name(const dcm_dataset *ds, const dcm_element *el)
{
    const dcm_dict_entry *entry = NULL;

    if (dcm_tag_is_private_creator(el->tag))
        return "PrivateCreator";
    if (dcm_tag_is_private(el->tag)) {
        const dcm_element *creator = dcm_dataset_get(ds, dcm_tag_private_creator_of(el->tag));
        const char *text;
        size_t len;

        if (DCM_TAG_ELEMENT(el->tag) >= 0x1000 && creator != NULL &&
            dcm_element_get_string(creator, 0, &text, &len) == CP_OK)
            entry = dcm_dict_lookup_private(text, len, el->tag);
        if (entry == NULL)
            return dcm_tag_is_group_length(el->tag) ? "PrivateGroupLength" : "Unknown";
    } else {
        entry = dcm_dict_lookup(el->tag);
    }
    if (entry == NULL)
        return "Unknown";
    return entry->keyword[0] != '\0' ? entry->keyword : entry->name;
}

/* --- values ------------------------------------------------------------ */

static uint64_t load_uint(const uint8_t *p, size_t size, bool big_endian)
{
    uint64_t v = 0;

    for (size_t i = 0; i < size; i++)
        v = (v << 8) | p[big_endian ? i : size - 1 - i];
    return v;
}

/*
 * The bytes of a value to show: in memory, or read from the source when
 * there is one. *data stays NULL when the value is not available.
 */
static cp_status value_bytes(dump_ctx *d, const dcm_element *el, const uint8_t **data,
                             size_t *len)
{
    cp_status st;

    *data = el->value;
    *len = el->value != NULL ? (size_t)el->value_length : 0;
    if (el->value != NULL || (el->flags & DCM_ELEMENT_NOT_LOADED) == 0)
        return CP_OK;
    if (d->opts->source == NULL || (el->flags & DCM_ELEMENT_TRUNCATED) != 0)
        return CP_OK;

    cp_buf_reset(&d->raw);
    st = dcm_element_read_value(el, d->opts->source, &d->raw, d->err);
    if (st != CP_OK)
        return st;
    *data = d->raw.data;
    *len = d->raw.len;
    return CP_OK;
}

static void append_not_loaded(dump_ctx *d, const dcm_element *el)
{
    addf(d, "(not loaded, %llu bytes at offset %llu)",
                   (unsigned long long)el->value_length, (unsigned long long)el->offset);
}

static void trim_value(dcm_vr vr, const char **text, size_t *len)
{
    const char *s = *text;
    size_t n = *len;

    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0'))
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

/*
 * Text: decoded as a whole, then each value trimmed and shown joined by `\`
 * inside brackets. *vm gets the number of values.
 */
static cp_status append_text(dump_ctx *d, dcm_charset *cs, const dcm_element *el,
                             const uint8_t *data, size_t len, size_t *vm)
{
    bool multi = dcm_vr_is_multi_valued_string(el->vr);
    size_t used = 0, pos = 0;
    bool clipped = false;
    const char *text;
    size_t text_len;
    cp_status st;

    cp_buf_reset(&d->text);
    st = dcm_charset_decode(cs, el->vr, data, len, &d->text, &d->flags);
    if (st != CP_OK)
        return cp_error_set(d->err, st, (int64_t)el->offset, el->tag,
                            "the text could not be decoded");
    text = (const char *)d->text.data;
    text_len = d->text.len;

    add_byte(d, '[');
    while (text != NULL && pos <= text_len && !clipped) {
        const char *sep = multi ? memchr(text + pos, '\\', text_len - pos) : NULL;
        size_t end = sep != NULL ? (size_t)(sep - text) : text_len;
        const char *value = text + pos;
        size_t value_len = end - pos;

        trim_value(el->vr, &value, &value_len);
        if (pos > 0)
            clipped = append_clipped(d, "\\", 1, &used);
        if (!clipped)
            clipped = append_clipped(d, value, value_len, &used);
        pos = end + 1;
    }
    *vm = 0;
    if (text != NULL && used > 0) {
        *vm = 1;
        for (size_t i = 0; multi && i < text_len; i++)
            *vm += text[i] == '\\';
    }
    if (clipped)
        add_str(d, "...");
    add_byte(d, ']');
    return CP_OK;
}

static void format_number(dcm_vr vr, const uint8_t *p, bool big_endian, char *out,
                          size_t size)
{
    uint64_t u = load_uint(p, dcm_vr_numeric_size(vr), big_endian);

    switch (vr) {
    case DCM_VR_AT:
        snprintf(out, size, "(%04X,%04X)", (unsigned)load_uint(p, 2, big_endian),
                 (unsigned)load_uint(p + 2, 2, big_endian));
        break;
    case DCM_VR_FL: {
        uint32_t bits = (uint32_t)u;
        float f;

        memcpy(&f, &bits, sizeof(f));
        snprintf(out, size, "%.9g", (double)f);
        break;
    }
    case DCM_VR_FD: {
        double v;

        memcpy(&v, &u, sizeof(v));
        snprintf(out, size, "%.17g", v);
        break;
    }
    case DCM_VR_SS:
        snprintf(out, size, "%d", (int)(int16_t)(uint16_t)u);
        break;
    case DCM_VR_SL:
        snprintf(out, size, "%ld", (long)(int32_t)(uint32_t)u);
        break;
    case DCM_VR_SV:
        snprintf(out, size, "%lld", (long long)(int64_t)u);
        break;
    default:
        snprintf(out, size, "%llu", (unsigned long long)u);
        break;
    }
}

static void append_numbers(dump_ctx *d, dcm_vr vr, const uint8_t *data, size_t len,
                           bool big_endian)
{
    size_t size = dcm_vr_numeric_size(vr);
    size_t used = 0;
    char text[48];

    for (size_t i = 0; i + size <= len; i += size) {
        format_number(vr, data + i, big_endian, text, sizeof(text));
        if ((i > 0 && append_clipped(d, "\\", 1, &used)) ||
            append_clipped(d, text, strlen(text), &used)) {
            add_str(d, "...");
            return;
        }
    }
}

/* The first units of a binary value in hex, in the byte order of the machine. */
static void append_hex(dump_ctx *d, dcm_vr vr, const uint8_t *data, size_t len,
                       bool big_endian)
{
    size_t unit = dcm_vr_swap_unit(vr);
    size_t used = 0;

    if (unit == 0 || len % unit != 0)
        unit = 1;
    for (size_t i = 0; i < len; i += unit) {
        if (used + 2 * unit > d->width) {
            add_str(d, "...");
            return;
        }
        if (i > 0)
            add_byte(d, ' ');
        addf(d, "%0*llx", (int)(2 * unit),
                       (unsigned long long)load_uint(data + i, unit, big_endian));
        used += 2 * unit + 1;
    }
}

/* --- elements ---------------------------------------------------------- */

static cp_status dump_fragments(dump_ctx *d, const dcm_element *el, int depth)
{
    char name[48];
    cp_status st;

    for (uint32_t i = 0; i < el->fragment_count; i++) {
        const dcm_fragment *f = &el->fragments[i];

        line_start(d, depth + 1, DCM_TAG_ITEM, "na");
        if (f->length == 0)
            add_str(d, "(no value)");
        else if (f->data == NULL)
            addf(d, "(not loaded, %lu bytes at offset %llu)",
                           (unsigned long)f->length, (unsigned long long)f->offset);
        else
            append_hex(d, DCM_VR_OB, f->data, f->length, false);
        if (i == 0)
            snprintf(name, sizeof(name), "Item (Basic Offset Table)");
        else
            snprintf(name, sizeof(name), "Item (fragment %lu)", (unsigned long)i);
        st = line_end(d, f->length, false, "1", name);
        if (st != CP_OK)
            return st;
    }

    line_start(d, depth, DCM_TAG_SEQUENCE_DELIMITATION, "na");
    add_str(d, "(SequenceDelimitationItem)");
    return line_end(d, 0, false, "0", "SequenceDelimitationItem");
}

static cp_status dump_items(dump_ctx *d, const dcm_element *el, dcm_charset *cs, int depth)
{
    cp_status st;

    for (uint32_t i = 0; i < el->item_count; i++) {
        const dcm_dataset *item = el->items[i];
        uint32_t length = dcm_dataset_item_length(item);
        bool undefined = length == DCM_UNDEFINED_LENGTH;

        line_start(d, depth + 1, DCM_TAG_ITEM, "na");
        addf(d, "(Item with %s length #=%zu)",
                       undefined ? "undefined" : "defined", dcm_dataset_count(item));
        st = line_end(d, length, false, "1", "Item");
        if (st == CP_OK)
            st = dump_dataset(d, item, cs, depth + 2);
        if (st == CP_OK && undefined) {
            line_start(d, depth + 1, DCM_TAG_ITEM_DELIMITATION, "na");
            add_str(d, "(ItemDelimitationItem)");
            st = line_end(d, 0, false, "0", "ItemDelimitationItem");
        }
        if (st != CP_OK)
            return st;
    }

    if (el->length != DCM_UNDEFINED_LENGTH)
        return CP_OK;
    line_start(d, depth, DCM_TAG_SEQUENCE_DELIMITATION, "na");
    add_str(d, "(SequenceDelimitationItem)");
    return line_end(d, 0, false, "0", "SequenceDelimitationItem");
}

static cp_status dump_element(dump_ctx *d, const dcm_dataset *ds, const dcm_element *el,
                              dcm_charset *cs, int depth)
{
    bool big_endian = dcm_dataset_big_endian(ds);
    bool truncated = (el->flags & DCM_ELEMENT_TRUNCATED) != 0;
    const char *name = element_name(ds, el);
    const uint8_t *data = NULL;
    size_t len = 0, vm = 0;
    char vm_text[24];
    cp_status st;

    line_start(d, depth, el->tag, dcm_vr_name(el->vr));

    if ((el->flags & DCM_ELEMENT_ENCAPSULATED) != 0) {
        addf(d, "(PixelSequence #=%lu)", (unsigned long)el->fragment_count);
        st = line_end(d, el->length, truncated, "1", name);
        return st != CP_OK ? st : dump_fragments(d, el, depth);
    }
    if (el->vr == DCM_VR_SQ || el->items != NULL) {
        addf(d, "(Sequence with %s length #=%lu)",
                       el->length == DCM_UNDEFINED_LENGTH ? "undefined" : "defined",
                       (unsigned long)el->item_count);
        st = line_end(d, el->length, truncated, "1", name);
        return st != CP_OK ? st : dump_items(d, el, cs, depth);
    }

    if (dcm_vr_is_bulk(el->vr) || el->vr == DCM_VR_NONE) {
        data = el->value;
        len = data != NULL ? (size_t)el->value_length : 0;
    } else {
        st = value_bytes(d, el, &data, &len);
        if (st != CP_OK)
            return st;
    }

    if (data == NULL && el->value_length > 0) {
        append_not_loaded(d, el);
        snprintf(vm_text, sizeof(vm_text), "?");
    } else if (len == 0) {
        add_str(d, "(no value)");
        snprintf(vm_text, sizeof(vm_text), "0");
    } else if (dcm_vr_numeric_size(el->vr) > 0) {
        append_numbers(d, el->vr, data, len, big_endian);
        snprintf(vm_text, sizeof(vm_text), "%zu", len / dcm_vr_numeric_size(el->vr));
    } else if (dcm_vr_is_string(el->vr)) {
        st = append_text(d, cs, el, data, len, &vm);
        if (st != CP_OK)
            return st;
        snprintf(vm_text, sizeof(vm_text), "%zu", vm);
    } else {
        append_hex(d, el->vr, data, len, big_endian);
        snprintf(vm_text, sizeof(vm_text), "1");
    }
    return line_end(d, el->length, truncated, vm_text, name);
}

/*
 * Lists ds. An item with its own Specific Character Set gets a decoder of
 * its own for it and the items below it; the others use `inherited`.
 */
static cp_status dump_dataset(dump_ctx *d, const dcm_dataset *ds, dcm_charset *inherited,
                              int depth)
{
    dcm_charset *own = NULL;
    dcm_charset *cs = inherited;
    cp_status st = CP_OK;

    if (inherited == NULL || (dcm_dataset_parent(ds) != NULL &&
                              dcm_dataset_get(ds, DCM_TAG_SPECIFIC_CHARACTER_SET) != NULL)) {
        const uint8_t *value;
        size_t len;

        dcm_dataset_charset(ds, &value, &len);
        st = dcm_charset_create(value, len, d->opts->charset_policy, &own, d->err);
        if (st != CP_OK)
            return st;
        cs = own;
    }

    for (size_t i = 0; i < dcm_dataset_count(ds) && st == CP_OK; i++)
        st = dump_element(d, ds, dcm_dataset_at(ds, i), cs, depth);

    if (own != NULL)
        dcm_charset_destroy(own);
    return st;
}

/* --- the header -------------------------------------------------------- */

char *dcm_dump_describe_charset_flags(unsigned flags, char *out, size_t size)
{
    static const struct {
        unsigned flag;
        const char *text;
    } names[] = {
        { DCM_CHARSET_GUESSED, "guessed (no Specific Character Set)" },
        { DCM_CHARSET_MISLABELLED, "mislabelled (decoded as another set)" },
        { DCM_CHARSET_REPLACED, "undecodable bytes replaced by U+FFFD" },
        { DCM_CHARSET_OVERRIDDEN, "declared set overridden" },
        { DCM_CHARSET_UNKNOWN_TERM, "unknown term (read as ISO_IR 6)" },
    };
    size_t used = 0;

    if (size == 0)
        return out;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int n;

        if ((flags & names[i].flag) == 0)
            continue;
        n = snprintf(out + used, size - used, "%s%s", used > 0 ? ", " : "", names[i].text);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    return out;
}

static cp_status scan_dataset(dump_ctx *d, const dcm_dataset *ds, dcm_charset *inherited)
{
    dcm_charset *own = NULL;
    dcm_charset *cs = inherited;
    cp_status st = CP_OK;

    if (inherited == NULL || (dcm_dataset_parent(ds) != NULL &&
                              dcm_dataset_get(ds, DCM_TAG_SPECIFIC_CHARACTER_SET) != NULL)) {
        const uint8_t *value;
        size_t len;

        dcm_dataset_charset(ds, &value, &len);
        st = dcm_charset_create(value, len, d->opts->charset_policy, &own, d->err);
        if (st != CP_OK)
            return st;
        cs = own;
    }

    for (size_t i = 0; i < dcm_dataset_count(ds) && st == CP_OK; i++) {
        const dcm_element *el = dcm_dataset_at(ds, i);
        const uint8_t *data;
        size_t len;

        for (uint32_t k = 0; k < el->item_count && st == CP_OK; k++)
            st = scan_dataset(d, el->items[k], cs);
        if (st != CP_OK || !dcm_vr_uses_charset(el->vr))
            continue;
        st = value_bytes(d, el, &data, &len);
        if (st == CP_OK && len > 0) {
            cp_buf_reset(&d->text);
            st = dcm_charset_decode(cs, el->vr, data, len, &d->text, &d->flags);
            if (st != CP_OK)
                st = cp_error_set(d->err, st, (int64_t)el->offset, el->tag,
                                  "the text could not be decoded");
        }
    }

    if (own != NULL)
        dcm_charset_destroy(own);
    return st;
}

/* The value of Specific Character Set shown in the header, printable ASCII only. */
static void charset_name(const dcm_dataset *ds, char *out, size_t size)
{
    const uint8_t *value;
    size_t len, o = 0;

    dcm_dataset_charset(ds, &value, &len);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\0'))
        len--;
    for (size_t i = 0; i < len && o + 1 < size; i++)
        out[o++] = value[i] >= 0x20 && value[i] < 0x7F ? (char)value[i] : '?';
    out[o] = '\0';
    if (o == 0)
        snprintf(out, size, "none (ISO_IR 6)");
}

static cp_status dump_header(dump_ctx *d, const dcm_file *file)
{
    const dcm_transfer_syntax *ts = file->transfer_syntax;
    char name[96], flags[256];
    cp_status st;

    if ((file->flags & DCM_FILE_NO_META) != 0) {
        st = write_comment(d, "No File Meta Information: a bare data set");
    } else {
        st = write_comment(d, "File Meta Information%s",
                           (file->flags & DCM_FILE_NO_PREAMBLE) != 0 ?
                           " (no preamble or no \"DICM\")" : "");
        if (st == CP_OK && d->opts->show_meta && file->meta != NULL)
            st = dump_dataset(d, file->meta, NULL, 0);
    }
    if (st != CP_OK)
        return st;

    st = write_comment(d, "Transfer Syntax: %s (%s)%s", ts != NULL ? ts->uid : "unknown",
                       ts != NULL ? ts->name : "unknown",
                       (file->flags & DCM_FILE_TS_MISMATCH) != 0 ?
                       ", not the one the meta group declared" : "");
    if (st != CP_OK)
        return st;

    if (file->dataset != NULL) {
        d->flags = 0;
        st = scan_dataset(d, file->dataset, NULL);
        if (st != CP_OK)
            return st;
        charset_name(file->dataset, name, sizeof(name));
        dcm_dump_describe_charset_flags(d->flags, flags, sizeof(flags));
        st = write_comment(d, "Specific Character Set: %s%s%s", name,
                           flags[0] != '\0' ? "; text: " : "", flags);
    }
    if (st != CP_OK)
        return st;
    return write_comment(d, "Data set at offset %llu",
                         (unsigned long long)file->dataset_offset);
}

/* --- entry points ------------------------------------------------------ */

static void ctx_init(dump_ctx *d, const dcm_dump_options *opts, const dcm_sink *sink,
                     cp_error *err)
{
    memset(d, 0, sizeof(*d));
    d->opts = opts != NULL ? opts : &dump_defaults;
    d->width = d->opts->max_width > 0 ? d->opts->max_width : DCM_DUMP_WIDTH_DEFAULT;
    d->sink = sink;
    d->err = err;
    cp_buf_init(&d->line);
    cp_buf_init(&d->text);
    cp_buf_init(&d->raw);
}

static void ctx_free(dump_ctx *d)
{
    cp_buf_free(&d->line);
    cp_buf_free(&d->text);
    cp_buf_free(&d->raw);
}

cp_status dcm_dump_write(const dcm_file *file, const dcm_dump_options *opts,
                         const dcm_sink *sink, cp_error *err)
{
    dump_ctx d;
    cp_status st;

    if (file == NULL || sink == NULL || sink->write == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no file or no sink");
    ctx_init(&d, opts, sink, err);

    st = dump_header(&d, file);
    if (st == CP_OK && file->dataset != NULL)
        st = dump_dataset(&d, file->dataset, NULL, 0);
    if (st == CP_OK && (file->flags & DCM_FILE_STOPPED) != 0)
        st = write_comment(&d, "Reading stopped here, as asked");
    if (st == CP_OK && (file->flags & DCM_FILE_STRAY_DELIMITER) != 0)
        st = write_comment(&d, "Delimiters that closed nothing were skipped");
    if (st == CP_OK && (file->flags & DCM_FILE_PARTIAL) != 0)
        st = write_comment(&d, "Partial data set: the input ended or broke here");

    ctx_free(&d);
    return st;
}

cp_status dcm_dump_write_dataset(const dcm_dataset *ds, const dcm_dump_options *opts,
                                 const dcm_sink *sink, cp_error *err)
{
    dump_ctx d;
    cp_status st;

    if (ds == NULL || sink == NULL || sink->write == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no data set or no sink");
    ctx_init(&d, opts, sink, err);
    st = dump_dataset(&d, ds, NULL, 0);
    ctx_free(&d);
    return st;
}

cp_status dcm_dump_charset_flags(const dcm_dataset *ds, const dcm_dump_options *opts,
                                 unsigned *flags, cp_error *err)
{
    static const dcm_sink no_sink = { NULL, NULL };
    dump_ctx d;
    cp_status st;

    if (ds == NULL || flags == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no data set");
    ctx_init(&d, opts, &no_sink, err);
    st = scan_dataset(&d, ds, NULL);
    *flags |= d.flags;
    ctx_free(&d);
    return st;
}
