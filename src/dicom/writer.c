/*
 * writer.c - writes data sets (PS3.5 sections 7 and 8) and Part 10 files
 * (PS3.10 section 7) in Implicit VR Little Endian, Explicit VR Little and Big
 * Endian and Deflated Explicit VR Little Endian (PS3.5 Annex A), and
 * encapsulated pixel data (PS3.5 A.4) exactly as it was read.
 *
 * The tree a reader built is written back as it was: each element with its
 * length form (defined or undefined), its odd length and padding, each item
 * with its own length form, group lengths untouched. Only what a change of
 * transfer syntax forces is changed:
 *
 *   - byte order: values are swapped in units of dcm_vr_swap_unit;
 *   - VRs: implicit VR drops them; explicit VR takes the element's VR, or
 *     UN when none is known; "stream said UN" is kept while the byte order
 *     stays, since the value is then exactly what that UN held;
 *   - defined lengths of sequences and items: header sizes change between
 *     implicit and explicit VR, so every defined length is computed from
 *     what is written (a first pass over the item) rather than copied.
 *
 * The items of a sequence written as UN are in Implicit VR Little Endian
 * whatever the syntax around them (PS3.5 6.2.2). Values not in memory are
 * streamed from the source in pieces of DCM_WRITE_CHUNK_MAX bytes, and the
 * deflated syntax goes through zlib in pieces too, so memory stays bounded
 * whatever the size of the data set.
 */
#include "dicom/writer.h"

#include <limits.h>
#include <string.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dict.h"
#include "dicom/uid.h"

#define TAG_SOP_CLASS_UID       DCM_TAG(0x0008, 0x0016)
#define TAG_SOP_INSTANCE_UID    DCM_TAG(0x0008, 0x0018)
#define TAG_META_VERSION        DCM_TAG(0x0002, 0x0001)
#define TAG_MEDIA_SOP_CLASS     DCM_TAG(0x0002, 0x0002)
#define TAG_MEDIA_SOP_INSTANCE  DCM_TAG(0x0002, 0x0003)
#define TAG_IMPL_CLASS_UID      DCM_TAG(0x0002, 0x0012)
#define TAG_IMPL_VERSION_NAME   DCM_TAG(0x0002, 0x0013)

/* The largest defined length: one less than the undefined-length marker. */
#define LENGTH_MAX              (DCM_UNDEFINED_LENGTH - 1)

/* Bytes of an item or delimiter header: tag and 32-bit length, no VR. */
#define ITEM_HEADER_SIZE        8

/* How the bytes are laid out where the writer is. */
typedef struct enc {
    bool explicit_vr;
    bool big_endian;
} enc;

static const enc enc_implicit_le = { false, false };
static const enc enc_explicit_le = { true, false };

typedef struct writer {
    dcm_sink out;           /* the caller's sink, or the deflater in front of it */
    dcm_source *source;     /* for values not loaded; may be NULL */
    uint8_t *chunk;         /* DCM_WRITE_CHUNK_MAX bytes, allocated when first needed */
    cp_error *err;
} writer;

/* What writing one element takes, decided from the element and the encoding. */
typedef struct plan {
    dcm_vr vr;              /* VR of the value: what byte swapping follows */
    dcm_vr header_vr;       /* VR written in an explicit VR header */
    bool sequence;          /* written as items */
    bool encapsulated;      /* written as fragments */
    bool swap;              /* the byte order changes */
    enc items;              /* encoding of a sequence's items */
} plan;

/* --- headers and byte order ------------------------------------------------ */

static void put16(uint8_t *p, uint16_t v, bool big_endian)
{
    if (big_endian) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
    } else {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
    }
}

static void put32(uint8_t *p, uint32_t v, bool big_endian)
{
    if (big_endian) {
        put16(p, (uint16_t)(v >> 16), true);
        put16(p + 2, (uint16_t)v, true);
    } else {
        put16(p, (uint16_t)v, false);
        put16(p + 2, (uint16_t)(v >> 16), false);
    }
}

static bool header_has_vr(uint32_t tag, bool explicit_vr)
{
    return explicit_vr && DCM_TAG_GROUP(tag) != 0xFFFE;
}

/* The VR an explicit header carries: UN stands for unknown and for too long. */
static dcm_vr header_vr_for(dcm_vr vr, uint32_t length)
{
    if (vr == DCM_VR_NONE || (unsigned)vr >= DCM_VR_COUNT)
        return DCM_VR_UN;
    if (!dcm_vr_has_long_length(vr) && length > 0xFFFFu)
        return DCM_VR_UN;
    return vr;
}

static size_t header_size(uint32_t tag, dcm_vr vr, uint32_t length, bool explicit_vr)
{
    if (!header_has_vr(tag, explicit_vr))
        return 8;
    return dcm_vr_has_long_length(header_vr_for(vr, length)) ? 12 : 8;
}

size_t dcm_write_header(uint8_t out[DCM_WRITE_HEADER_MAX], uint32_t tag, dcm_vr vr,
                        uint32_t length, bool explicit_vr, bool big_endian)
{
    const char *name;

    put16(out, DCM_TAG_GROUP(tag), big_endian);
    put16(out + 2, DCM_TAG_ELEMENT(tag), big_endian);
    if (!header_has_vr(tag, explicit_vr)) {
        put32(out + 4, length, big_endian);
        return 8;
    }

    vr = header_vr_for(vr, length);
    name = dcm_vr_name(vr);
    out[4] = (uint8_t)name[0];
    out[5] = (uint8_t)name[1];
    if (!dcm_vr_has_long_length(vr)) {
        put16(out + 6, (uint16_t)length, big_endian);
        return 8;
    }
    out[6] = 0;
    out[7] = 0;
    put32(out + 8, length, big_endian);
    return 12;
}

void dcm_write_swap(dcm_vr vr, uint8_t *data, size_t len)
{
    size_t unit = dcm_vr_swap_unit(vr);

    if (unit < 2)
        return;
    for (size_t at = 0; at + unit <= len; at += unit) {
        for (size_t i = 0, j = unit - 1; i < j; i++, j--) {
            uint8_t t = data[at + i];

            data[at + i] = data[at + j];
            data[at + j] = t;
        }
    }
}

/* --- planning an element ---------------------------------------------------- */

/* Whether the element was read from implicit VR: its VR is the dictionary's guess. */
static bool read_implicit(const dcm_element *el)
{
    return (el->flags & DCM_ELEMENT_VR_FROM_DICTIONARY) != 0 &&
           (el->flags & DCM_ELEMENT_WAS_UN) == 0;
}

/*
 * The VR the value has. Implicit VR Little Endian defines the "OB or OW"
 * attributes (Pixel Data, Overlay Data, Waveform Data) as OW (PS3.5 A.1,
 * 8.1.2, 8.2). The reader resolves them so, but a tree that took the
 * dictionary's first VR would carry OB and leave 16-bit samples unswapped
 * in big endian.
 */
static dcm_vr value_vr(const dcm_element *el)
{
    const dcm_dict_entry *entry;

    if (el->vr != DCM_VR_OB || !read_implicit(el))
        return el->vr;
    entry = dcm_dict_lookup(el->tag);
    if (entry != NULL && entry->vr == DCM_VR_OB && entry->vr_alt == DCM_VR_OW)
        return DCM_VR_OW;
    return el->vr;
}

/*
 * Whether the element is written as a sequence of items: it has items, or
 * it has no value and was declared a sequence or undefined (an undefined
 * length that is not encapsulated pixel data can only hold items).
 */
static bool is_sequence(const dcm_element *el)
{
    if (el->flags & DCM_ELEMENT_ENCAPSULATED)
        return false;
    if (el->items != NULL || el->item_count > 0)
        return true;
    if (el->value != NULL || (el->flags & DCM_ELEMENT_NOT_LOADED))
        return false;
    return el->vr == DCM_VR_SQ || (el->flags & DCM_ELEMENT_UNDEFINED_LENGTH) != 0;
}

/*
 * A value longer than a 16-bit length field takes the dictionary's other VR
 * when that one has a long header and swaps alike ("US or OW" LUT Data),
 * else UN (PS3.5 6.2.2).
 */
static dcm_vr long_value_vr(const dcm_element *el, dcm_vr vr, uint64_t length)
{
    const dcm_dict_entry *entry;

    if (length <= 0xFFFFu || dcm_vr_has_long_length(vr))
        return vr;
    entry = dcm_dict_lookup(el->tag);
    if (entry != NULL && entry->vr_alt != DCM_VR_NONE &&
        dcm_vr_has_long_length(entry->vr_alt) &&
        dcm_vr_swap_unit(entry->vr_alt) == dcm_vr_swap_unit(vr))
        return entry->vr_alt;
    return DCM_VR_UN;
}

static void plan_element(const dcm_dataset *ds, const dcm_element *el, enc e, plan *p)
{
    bool same_order = dcm_dataset_big_endian(ds) == e.big_endian;

    p->vr = value_vr(el);
    p->sequence = is_sequence(el);
    p->encapsulated = (el->flags & DCM_ELEMENT_ENCAPSULATED) != 0;
    p->swap = !same_order && !p->sequence && !p->encapsulated;

    if ((el->flags & DCM_ELEMENT_WAS_UN) && same_order)
        p->header_vr = DCM_VR_UN;
    else if (p->vr == DCM_VR_NONE || p->vr == DCM_VR_UN)
        p->header_vr = DCM_VR_UN;
    else if (p->sequence)
        p->header_vr = DCM_VR_SQ;
    else if (p->encapsulated)
        p->header_vr = p->vr;
    else
        p->header_vr = long_value_vr(el, p->vr, el->value_length);

    /* A sequence written as UN holds Implicit VR Little Endian (PS3.5 6.2.2). */
    p->items = e;
    if (p->sequence && e.explicit_vr && p->header_vr == DCM_VR_UN)
        p->items = enc_implicit_le;
}

/* --- sizes (the first pass for defined lengths) ----------------------------- */

static uint64_t dataset_size(const dcm_dataset *ds, enc e);

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/*
 * The length a sequence or item is written with: undefined when it was, and
 * when its content outgrew a 32-bit length, else the size of its content.
 */
static uint32_t length_for(bool undefined, uint64_t size)
{
    return undefined || size > LENGTH_MAX ? DCM_UNDEFINED_LENGTH : (uint32_t)size;
}

static bool item_undefined(const dcm_dataset *item)
{
    return dcm_dataset_item_length(item) == DCM_UNDEFINED_LENGTH;
}

/*
 * Bytes of an item: header, content and, when undefined, its delimiter.
 * Each level sizes its content once, so sizing a tree costs its size times
 * its depth, not more.
 */
static uint64_t item_size(const dcm_dataset *item, enc e)
{
    uint64_t content = dataset_size(item, e);
    uint64_t size = add_sat(ITEM_HEADER_SIZE, content);

    if (length_for(item_undefined(item), content) == DCM_UNDEFINED_LENGTH)
        size = add_sat(size, ITEM_HEADER_SIZE);
    return size;
}

/* Bytes of a sequence's items, without the sequence's header or delimiter. */
static uint64_t items_size(const dcm_element *el, enc items)
{
    uint64_t size = 0;

    for (uint32_t i = 0; i < el->item_count; i++)
        size = add_sat(size, item_size(el->items[i], items));
    return size;
}

static bool sequence_undefined(const dcm_element *el)
{
    return (el->flags & DCM_ELEMENT_UNDEFINED_LENGTH) != 0;
}

static uint64_t fragments_size(const dcm_element *el)
{
    uint64_t size = ITEM_HEADER_SIZE;     /* the sequence delimiter */

    for (uint32_t i = 0; i < el->fragment_count; i++)
        size = add_sat(size, ITEM_HEADER_SIZE + (uint64_t)el->fragments[i].length);
    return size;
}

static uint64_t element_size(const dcm_dataset *ds, const dcm_element *el, enc e)
{
    plan p;
    uint64_t content;
    uint32_t length;

    plan_element(ds, el, e, &p);
    if (p.encapsulated)
        return add_sat(header_size(el->tag, p.header_vr, DCM_UNDEFINED_LENGTH,
                                   e.explicit_vr), fragments_size(el));
    if (!p.sequence)
        return add_sat(header_size(el->tag, p.header_vr, (uint32_t)el->value_length,
                                   e.explicit_vr), el->value_length);

    content = items_size(el, p.items);
    length = length_for(sequence_undefined(el), content);
    return add_sat(add_sat(header_size(el->tag, p.header_vr, length, e.explicit_vr), content),
                   length == DCM_UNDEFINED_LENGTH ? ITEM_HEADER_SIZE : 0);
}

static uint64_t dataset_size(const dcm_dataset *ds, enc e)
{
    uint64_t size = 0;
    size_t count = dcm_dataset_count(ds);

    for (size_t i = 0; i < count; i++)
        size = add_sat(size, element_size(ds, dcm_dataset_at(ds, i), e));
    return size;
}

/* --- checks made before the first byte is written --------------------------- */

/*
 * What is checked before writing: encapsulated is whether encapsulated pixel
 * data may be written (the target syntax is encapsulated, or the data set is
 * written in the syntax it was read in, whatever that declared).
 */
typedef struct check {
    const dcm_transfer_syntax *ts;
    const dcm_source *source;
    bool encapsulated;
    cp_error *err;
} check;

static cp_status check_dataset(const check *c, const dcm_dataset *ds, unsigned depth);

static cp_status check_element(const check *c, const dcm_element *el, unsigned depth)
{
    cp_error *err = c->err;
    bool not_loaded = (el->flags & DCM_ELEMENT_NOT_LOADED) != 0;
    cp_status st;

    if (el->flags & DCM_ELEMENT_TRUNCATED)
        return cp_error_set(err, CP_ERR_INVALID, (int64_t)el->offset, el->tag,
                            "the value was cut short when read; refusing to write it");
    if (el->value_length >= DCM_UNDEFINED_LENGTH)
        return cp_error_set(err, CP_ERR_INVALID, (int64_t)el->offset, el->tag,
                            "value of %llu bytes does not fit a 32-bit length",
                            (unsigned long long)el->value_length);

    if (el->flags & DCM_ELEMENT_ENCAPSULATED) {
        if (!c->encapsulated)
            return cp_error_set(err, CP_ERR_UNSUPPORTED, (int64_t)el->offset, el->tag,
                                "encapsulated pixel data cannot be written in %s",
                                c->ts->name);
        for (uint32_t i = 0; i < el->fragment_count; i++)
            not_loaded = not_loaded || el->fragments[i].data == NULL;
    }
    if (not_loaded && c->source == NULL)
        return cp_error_set(err, CP_ERR_INVALID, (int64_t)el->offset, el->tag,
                            "the value is not loaded and no source was given");

    for (uint32_t i = 0; i < el->item_count; i++) {
        st = check_dataset(c, el->items[i], depth + 1);
        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}

static cp_status check_dataset(const check *c, const dcm_dataset *ds, unsigned depth)
{
    size_t count = dcm_dataset_count(ds);

    /* The reader enforces the same bound; a tree built otherwise is refused. */
    if (depth > DCM_SEQUENCE_DEPTH_MAX)
        return cp_error_set(c->err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "sequences nested deeper than %d", DCM_SEQUENCE_DEPTH_MAX);
    for (size_t i = 0; i < count; i++) {
        cp_status st = check_element(c, dcm_dataset_at(ds, i), depth);

        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}

/* --- output ----------------------------------------------------------------- */

static cp_status emit(writer *w, const void *data, size_t len)
{
    cp_status st = dcm_sink_write(&w->out, data, len);

    if (st != CP_OK)
        return cp_error_set(w->err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the sink refused %zu bytes", len);
    return CP_OK;
}

static cp_status emit_header(writer *w, uint32_t tag, dcm_vr vr, uint32_t length, enc e)
{
    uint8_t header[DCM_WRITE_HEADER_MAX];
    size_t n = dcm_write_header(header, tag, vr, length, e.explicit_vr, e.big_endian);

    return emit(w, header, n);
}

static cp_status get_chunk(writer *w)
{
    if (w->chunk != NULL)
        return CP_OK;
    w->chunk = cp_malloc(DCM_WRITE_CHUNK_MAX);
    if (w->chunk == NULL)
        return cp_error_set(w->err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no memory for a %u-byte write buffer", DCM_WRITE_CHUNK_MAX);
    return CP_OK;
}

/*
 * Writes len bytes of a value, from memory when data is not NULL, else read
 * from the source at offset, in pieces, byte-swapped as vr when swap is set.
 */
static cp_status emit_value(writer *w, uint32_t tag, const uint8_t *data, uint64_t offset,
                            uint64_t len, dcm_vr vr, bool swap)
{
    cp_status st;

    swap = swap && dcm_vr_swap_unit(vr) > 1;
    if (data != NULL && !swap)
        return emit(w, data, (size_t)len);

    st = get_chunk(w);
    if (st != CP_OK)
        return st;

    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < DCM_WRITE_CHUNK_MAX ? (size_t)(len - done)
                                                     : DCM_WRITE_CHUNK_MAX;

        if (data != NULL) {
            memcpy(w->chunk, data + done, n);
        } else {
            size_t got = 0;

            st = dcm_source_pread(w->source, offset + done, w->chunk, n, &got);
            if (st == CP_OK && got < n)
                st = CP_ERR_TRUNCATED;
            if (st != CP_OK)
                return cp_error_set(w->err, st, (int64_t)(offset + done), tag,
                                    "reading %zu bytes of the value from the source", n);
        }
        if (swap)
            dcm_write_swap(vr, w->chunk, n);
        st = emit(w, w->chunk, n);
        if (st != CP_OK)
            return st;
        done += n;
    }
    return CP_OK;
}

static cp_status write_dataset(writer *w, const dcm_dataset *ds, enc e);

static cp_status write_item(writer *w, const dcm_dataset *item, enc e)
{
    uint32_t length = item_undefined(item) ? DCM_UNDEFINED_LENGTH
                                           : length_for(false, dataset_size(item, e));
    cp_status st = emit_header(w, DCM_TAG_ITEM, DCM_VR_NONE, length, e);

    if (st == CP_OK)
        st = write_dataset(w, item, e);
    if (st == CP_OK && length == DCM_UNDEFINED_LENGTH)
        st = emit_header(w, DCM_TAG_ITEM_DELIMITATION, DCM_VR_NONE, 0, e);
    return st;
}

static cp_status write_sequence(writer *w, const dcm_element *el, const plan *p, enc e)
{
    uint32_t length = sequence_undefined(el) ? DCM_UNDEFINED_LENGTH
                                             : length_for(false, items_size(el, p->items));
    cp_status st = emit_header(w, el->tag, p->header_vr, length, e);

    for (uint32_t i = 0; st == CP_OK && i < el->item_count; i++)
        st = write_item(w, el->items[i], p->items);
    if (st == CP_OK && length == DCM_UNDEFINED_LENGTH)
        st = emit_header(w, DCM_TAG_SEQUENCE_DELIMITATION, DCM_VR_NONE, 0, p->items);
    return st;
}

/* Encapsulated pixel data (PS3.5 A.4): every fragment as it was, BOT first. */
static cp_status write_fragments(writer *w, const dcm_element *el, const plan *p, enc e)
{
    cp_status st = emit_header(w, el->tag, p->header_vr, DCM_UNDEFINED_LENGTH, e);

    for (uint32_t i = 0; st == CP_OK && i < el->fragment_count; i++) {
        const dcm_fragment *f = &el->fragments[i];

        st = emit_header(w, DCM_TAG_ITEM, DCM_VR_NONE, f->length, e);
        if (st == CP_OK)
            st = emit_value(w, el->tag, f->data, f->offset, f->length, DCM_VR_OB, false);
    }
    if (st == CP_OK)
        st = emit_header(w, DCM_TAG_SEQUENCE_DELIMITATION, DCM_VR_NONE, 0, e);
    return st;
}

static cp_status write_element(writer *w, const dcm_dataset *ds, const dcm_element *el,
                               enc e)
{
    plan p;
    cp_status st;

    plan_element(ds, el, e, &p);
    if (p.sequence)
        return write_sequence(w, el, &p, e);
    if (p.encapsulated)
        return write_fragments(w, el, &p, e);

    if (el->value == NULL && el->value_length > 0 && !(el->flags & DCM_ELEMENT_NOT_LOADED))
        return cp_error_set(w->err, CP_ERR_INVALID, (int64_t)el->offset, el->tag,
                            "element declares %llu bytes but holds no value",
                            (unsigned long long)el->value_length);

    st = emit_header(w, el->tag, p.header_vr, (uint32_t)el->value_length, e);
    if (st != CP_OK)
        return st;
    return emit_value(w, el->tag, el->value, el->offset, el->value_length, p.vr, p.swap);
}

static cp_status write_dataset(writer *w, const dcm_dataset *ds, enc e)
{
    size_t count = dcm_dataset_count(ds);

    for (size_t i = 0; i < count; i++) {
        cp_status st = write_element(w, ds, dcm_dataset_at(ds, i), e);

        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}

/* --- deflate (PS3.5 A.5) ---------------------------------------------------- */

typedef struct deflater {
    z_stream zs;
    const dcm_sink *next;
    uint8_t *out;           /* DCM_DEFLATE_CHUNK bytes */
    uint64_t total;         /* compressed bytes handed to next */
    bool ready;             /* deflateInit2 succeeded */
} deflater;

static voidpf zlib_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return cp_calloc(items, size);
}

static void zlib_free(voidpf opaque, voidpf ptr)
{
    (void)opaque;
    cp_free(ptr);
}

/* Runs deflate over what zs holds and hands every full output buffer on. */
static cp_status deflater_run(deflater *d, int flush)
{
    int rc;

    do {
        size_t n;

        d->zs.next_out = d->out;
        d->zs.avail_out = DCM_DEFLATE_CHUNK;
        rc = deflate(&d->zs, flush);
        if (rc == Z_STREAM_ERROR)
            return CP_ERR_INVALID;
        n = DCM_DEFLATE_CHUNK - d->zs.avail_out;
        if (n > 0) {
            cp_status st = dcm_sink_write(d->next, d->out, n);

            if (st != CP_OK)
                return st;
            d->total += n;
        }
    } while (d->zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    return CP_OK;
}

static cp_status deflater_write(void *ctx, const void *data, size_t len)
{
    deflater *d = ctx;
    const uint8_t *p = data;

    while (len > 0) {
        uInt n = len > UINT_MAX ? UINT_MAX : (uInt)len;
        cp_status st;

        d->zs.next_in = (Bytef *)(uintptr_t)p;
        d->zs.avail_in = n;
        st = deflater_run(d, Z_NO_FLUSH);
        if (st != CP_OK)
            return st;
        p += n;
        len -= n;
    }
    return CP_OK;
}

static cp_status deflater_start(deflater *d, const dcm_sink *next, cp_error *err)
{
    memset(d, 0, sizeof *d);
    d->next = next;
    d->zs.zalloc = zlib_alloc;
    d->zs.zfree = zlib_free;
    d->out = cp_malloc(DCM_DEFLATE_CHUNK);
    if (d->out == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no memory for the deflater");

    /* Raw deflate (RFC 1951): no zlib header or checksum (PS3.5 A.5). */
    if (deflateInit2(&d->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "deflateInit2 failed");
    d->ready = true;
    return CP_OK;
}

/*
 * Ends the stream. An odd-length result gets one NUL byte after the end of
 * the deflate stream, which inflaters never read, so that the file keeps
 * the even length every DICOM stream has.
 */
static cp_status deflater_finish(deflater *d, cp_error *err)
{
    static const uint8_t pad = 0;
    cp_status st;

    d->zs.next_in = NULL;
    d->zs.avail_in = 0;
    st = deflater_run(d, Z_FINISH);
    if (st == CP_OK && d->total % 2 != 0)
        st = dcm_sink_write(d->next, &pad, 1);
    if (st != CP_OK)
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "writing the deflated data set failed");
    return CP_OK;
}

static void deflater_end(deflater *d)
{
    if (d->ready)
        deflateEnd(&d->zs);
    cp_free(d->out);
    d->out = NULL;
    d->ready = false;
}

/* --- data sets -------------------------------------------------------------- */

static enc enc_of(const dcm_transfer_syntax *ts)
{
    enc e = { ts->explicit_vr, ts->big_endian };

    return e;
}

/* Writes ds in ts to sink, through the deflater when ts is deflated. */
static cp_status write_body(const dcm_dataset *ds, const dcm_transfer_syntax *ts,
                            dcm_source *source, const dcm_sink *sink, cp_error *err)
{
    writer w = { *sink, source, NULL, err };
    deflater d;
    cp_status st;

    memset(&d, 0, sizeof d);
    if (ts->deflated) {
        st = deflater_start(&d, sink, err);
        if (st != CP_OK)
            goto done;
        w.out.write = deflater_write;
        w.out.ctx = &d;
    }

    st = write_dataset(&w, ds, enc_of(ts));
    if (st == CP_OK && ts->deflated)
        st = deflater_finish(&d, err);

done:
    deflater_end(&d);
    cp_free(w.chunk);
    return st;
}

cp_status dcm_write_dataset(const dcm_dataset *ds, const dcm_transfer_syntax *ts,
                            dcm_source *source, const dcm_sink *sink, cp_error *err)
{
    check c = { ts, source, ts != NULL && ts->encapsulated, err };
    cp_status st;

    if (ds == NULL || ts == NULL || sink == NULL || sink->write == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no data set, transfer syntax or sink");
    st = check_dataset(&c, ds, 0);
    if (st != CP_OK)
        return st;
    return write_body(ds, ts, source, sink, err);
}

/* --- File Meta Information (PS3.10 7.1) ------------------------------------ */

static cp_status buf_sink_write(void *ctx, const void *data, size_t len)
{
    return cp_buf_append(ctx, data, len);
}

/* Appends an explicit VR little endian element, padded to even length with pad. */
static cp_status append_element(cp_buf *out, uint32_t tag, dcm_vr vr, const void *value,
                                size_t len, uint8_t pad)
{
    uint8_t header[DCM_WRITE_HEADER_MAX];
    size_t padded = len + (len & 1);
    size_t n = dcm_write_header(header, tag, vr, (uint32_t)padded, true, false);
    cp_status st = cp_buf_append(out, header, n);

    if (st == CP_OK)
        st = cp_buf_append(out, value, len);
    if (st == CP_OK && padded != len)
        st = cp_buf_append_byte(out, pad);
    return st;
}

static size_t uid_trim(const char *uid, size_t len)
{
    while (len > 0 && (uid[len - 1] == '\0' || uid[len - 1] == ' '))
        len--;
    return len;
}

/* Appends (0002,0000) saying that group_len bytes of the group follow it. */
static cp_status append_group_length(cp_buf *out, size_t group_len)
{
    uint8_t value[4];

    if (group_len > DCM_META_GROUP_MAX)
        return CP_ERR_LIMIT;
    put32(value, (uint32_t)group_len, false);
    return append_element(out, DCM_TAG_FILE_META_GROUP_LENGTH, DCM_VR_UL, value, 4, 0);
}

cp_status dcm_write_meta_group(const char *sop_class_uid, size_t class_len,
                               const char *sop_instance_uid, size_t instance_len,
                               const dcm_transfer_syntax *ts, cp_buf *out)
{
    static const uint8_t version[2] = { 0x00, 0x01 };
    const char *impl_uid = DCM_IMPLEMENTATION_CLASS_UID;
    const char *impl_name = DCM_IMPLEMENTATION_VERSION_NAME;
    cp_buf body = CP_BUF_INIT;
    cp_status st;

    class_len = sop_class_uid == NULL ? 0 : uid_trim(sop_class_uid, class_len);
    instance_len = sop_instance_uid == NULL ? 0 : uid_trim(sop_instance_uid, instance_len);
    if (class_len == 0 || class_len > DCM_UID_MAX || instance_len == 0 ||
        instance_len > DCM_UID_MAX || ts == NULL)
        return CP_ERR_INVALID;

    st = append_element(&body, TAG_META_VERSION, DCM_VR_OB, version, 2, 0);
    if (st == CP_OK)
        st = append_element(&body, TAG_MEDIA_SOP_CLASS, DCM_VR_UI, sop_class_uid,
                            class_len, 0);
    if (st == CP_OK)
        st = append_element(&body, TAG_MEDIA_SOP_INSTANCE, DCM_VR_UI, sop_instance_uid,
                            instance_len, 0);
    if (st == CP_OK)
        st = append_element(&body, DCM_TAG_TRANSFER_SYNTAX_UID, DCM_VR_UI, ts->uid,
                            strlen(ts->uid), 0);
    if (st == CP_OK)
        st = append_element(&body, TAG_IMPL_CLASS_UID, DCM_VR_UI, impl_uid,
                            strlen(impl_uid), 0);
    if (st == CP_OK)
        st = append_element(&body, TAG_IMPL_VERSION_NAME, DCM_VR_SH, impl_name,
                            strlen(impl_name), ' ');
    if (st != CP_OK)
        goto done;

    st = append_group_length(out, body.len);
    if (st == CP_OK)
        st = cp_buf_append(out, body.data, body.len);

done:
    cp_buf_free(&body);
    return st;
}

/* --- Part 10 files (PS3.10 7.1) --------------------------------------------- */

/* Reads a UID of ds (at most DCM_UID_MAX bytes, loaded or not) into out. */
static cp_status read_uid(const dcm_dataset *ds, uint32_t tag, dcm_source *source,
                          char out[DCM_UID_MAX], size_t *len, cp_error *err)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);
    size_t got = 0;

    if (el == NULL || el->value_length == 0 || el->value_length > DCM_UID_MAX ||
        is_sequence(el) || (el->flags & DCM_ELEMENT_ENCAPSULATED))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, tag,
                            "a meta group needs this UID and the data set has no "
                            "valid one");
    *len = (size_t)el->value_length;

    if (el->value != NULL) {
        memcpy(out, el->value, *len);
        return CP_OK;
    }
    if (source == NULL)
        return cp_error_set(err, CP_ERR_INVALID, (int64_t)el->offset, tag,
                            "the value is not loaded and no source was given");
    if (dcm_source_pread(source, el->offset, out, *len, &got) != CP_OK || got < *len)
        return cp_error_set(err, CP_ERR_TRUNCATED, (int64_t)el->offset, tag,
                            "reading the UID from the source failed");
    return CP_OK;
}

static cp_status build_meta(const dcm_dataset *ds, const dcm_transfer_syntax *ts,
                            dcm_source *source, cp_buf *out, cp_error *err)
{
    char sop_class[DCM_UID_MAX], sop_instance[DCM_UID_MAX];
    size_t class_len, instance_len;
    cp_status st;

    st = read_uid(ds, TAG_SOP_CLASS_UID, source, sop_class, &class_len, err);
    if (st == CP_OK)
        st = read_uid(ds, TAG_SOP_INSTANCE_UID, source, sop_instance, &instance_len, err);
    if (st != CP_OK)
        return st;

    st = dcm_write_meta_group(sop_class, class_len, sop_instance, instance_len, ts, out);
    if (st != CP_OK)
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "building the File Meta Information failed");
    return CP_OK;
}

/*
 * The meta group of a file written in another syntax than its own: its
 * elements as read but in Explicit VR Little Endian, the Transfer Syntax
 * UID replaced (or added in tag order), the group length computed anew.
 */
static cp_status rewrite_meta(const dcm_dataset *meta, const dcm_transfer_syntax *ts,
                              dcm_source *source, cp_buf *out, cp_error *err)
{
    cp_buf body = CP_BUF_INIT;
    writer w = { { buf_sink_write, &body }, source, NULL, err };
    size_t count = dcm_dataset_count(meta);
    bool ts_done = false;
    cp_status st = CP_OK;

    for (size_t i = 0; st == CP_OK && i <= count; i++) {
        const dcm_element *el = i < count ? dcm_dataset_at(meta, i) : NULL;

        if (!ts_done && (el == NULL || el->tag >= DCM_TAG_TRANSFER_SYNTAX_UID)) {
            st = append_element(&body, DCM_TAG_TRANSFER_SYNTAX_UID, DCM_VR_UI, ts->uid,
                                strlen(ts->uid), 0);
            ts_done = true;
        }
        if (st != CP_OK || el == NULL || el->tag == DCM_TAG_FILE_META_GROUP_LENGTH ||
            el->tag == DCM_TAG_TRANSFER_SYNTAX_UID)
            continue;
        st = write_element(&w, meta, el, enc_explicit_le);
    }
    if (st == CP_OK)
        st = append_group_length(out, body.len);
    if (st == CP_OK)
        st = cp_buf_append(out, body.data, body.len);
    if (st != CP_OK)
        st = cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "rewriting the File Meta Information failed");

    cp_free(w.chunk);
    cp_buf_free(&body);
    return st;
}

/*
 * The meta group kept as it was: in Explicit VR Little Endian as PS3.10
 * requires, or in implicit VR when that is how the file had it.
 */
static cp_status copy_meta(const dcm_dataset *meta, dcm_source *source, cp_buf *out,
                           cp_error *err)
{
    writer w = { { buf_sink_write, out }, source, NULL, err };
    enc e = enc_explicit_le;
    cp_status st;

    if (dcm_dataset_count(meta) > 0 && read_implicit(dcm_dataset_at(meta, 0)))
        e = enc_implicit_le;
    st = write_dataset(&w, meta, e);
    cp_free(w.chunk);
    return st;
}

static bool same_syntax(const dcm_transfer_syntax *a, const dcm_transfer_syntax *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a->uid, b->uid) == 0);
}

/*
 * Everything the write needs that can be refused before a byte is written.
 * Written in its own syntax, a data set keeps its encapsulated pixel data
 * even when the reader found it in another syntax than the meta group
 * declared (DCM_FILE_TS_MISMATCH: an encapsulated syntax declared, implicit
 * VR found); only a change of syntax must not touch it.
 */
static cp_status check_file(const dcm_file *file, const dcm_transfer_syntax *ts,
                            dcm_source *source, cp_error *err)
{
    bool same = same_syntax(ts, file->transfer_syntax);
    check c = { ts, source, same || ts->encapsulated, err };
    cp_status st;

    if (file->flags & (DCM_FILE_PARTIAL | DCM_FILE_STOPPED))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the data set was not read completely; refusing to write "
                            "part of it");
    if (!same && (ts->encapsulated || file->transfer_syntax == NULL ||
         file->transfer_syntax->encapsulated))
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "cannot change the transfer syntax from %s to %s",
                            file->transfer_syntax ? file->transfer_syntax->name : "?",
                            ts->name);

    st = check_dataset(&c, file->dataset, 0);
    if (st == CP_OK && file->meta != NULL)
        st = check_dataset(&c, file->meta, 0);
    return st;
}

cp_status dcm_write_file(const dcm_file *file, const dcm_write_options *opts,
                         const dcm_sink *sink, cp_error *err)
{
    const dcm_transfer_syntax *ts;
    dcm_source *source = opts != NULL ? opts->source : NULL;
    cp_buf head = CP_BUF_INIT;
    cp_status st;

    if (file == NULL || file->dataset == NULL || sink == NULL || sink->write == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no file, data set or sink");
    ts = opts != NULL && opts->transfer_syntax != NULL ? opts->transfer_syntax
                                                        : file->transfer_syntax;
    if (ts == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the file's transfer syntax is unknown and none was given");
    st = check_file(file, ts, source, err);
    if (st != CP_OK)
        return st;

    /* The preamble, "DICM" and the meta group are small: built, then sent at once. */
    st = cp_buf_append(&head, file->preamble, sizeof file->preamble);
    if (st == CP_OK)
        st = cp_buf_append(&head, "DICM", 4);
    if (st != CP_OK) {
        st = cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "no memory for the file header");
        goto done;
    }
    if (file->meta == NULL)
        st = build_meta(file->dataset, ts, source, &head, err);
    else if (same_syntax(ts, file->transfer_syntax))
        st = copy_meta(file->meta, source, &head, err);
    else
        st = rewrite_meta(file->meta, ts, source, &head, err);
    if (st != CP_OK)
        goto done;

    st = dcm_sink_write(sink, head.data, head.len);
    if (st != CP_OK) {
        st = cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "writing the file header failed");
        goto done;
    }
    st = write_body(file->dataset, ts, source, sink, err);

done:
    cp_buf_free(&head);
    return st;
}
