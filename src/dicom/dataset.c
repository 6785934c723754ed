/*
 * dataset.c - data sets read into memory (PS3.5 section 7) and the Part 10
 * files that hold them (PS3.10 section 7.1): preamble, "DICM", the File Meta
 * Information group in Explicit VR Little Endian, then the data set in the
 * transfer syntax the meta group names (PS3.5 section 10, Annex A).
 *
 * The tree is built from the events of the pull parser (parser.c). All of it
 * (data sets, elements, item and fragment arrays, loaded values) lives in an
 * arena owned by the dcm_file: a few large blocks, freed at once. While a
 * data set is open its elements collect in a scratch array reused from one
 * item to the next at the same depth; when it closes they are copied once
 * into the arena (the top level's array is not copied but becomes a block
 * of the arena), so building costs no allocation per element.
 */
#include "dicom/dataset.h"

#include <fcntl.h>
#include <stdalign.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/parser.h"

/* --- the arena ---------------------------------------------------------------- */

#define ARENA_FIRST_CHUNK  (16u * 1024)
#define ARENA_CHUNK_MAX    (1024u * 1024)
#define ARENA_ALIGN        16u

/* Values of unknown-size streams are read in pieces this big, not at their declared size. */
#define STREAM_VALUE_PIECE (1024u * 1024)

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    size_t used;
} arena_chunk;

#define ARENA_HEADER \
    ((sizeof(arena_chunk) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))

typedef struct {
    arena_chunk *head;      /* the chunk small allocations come from */
    size_t next_size;
} arena;

static uint8_t *chunk_data(arena_chunk *c)
{
    return (uint8_t *)c + ARENA_HEADER;
}

static void *arena_alloc(arena *a, size_t n)
{
    arena_chunk *c;
    size_t size;

    if (n > SIZE_MAX - ARENA_HEADER - ARENA_ALIGN)
        return NULL;
    n = (n + 7) & ~(size_t)7;
    if (a->head != NULL && a->head->size - a->head->used >= n) {
        void *p = chunk_data(a->head) + a->head->used;

        a->head->used += n;
        return p;
    }

    /* A big block gets a chunk of its own, behind the current one. */
    if (n > ARENA_CHUNK_MAX / 4) {
        c = cp_malloc(ARENA_HEADER + n);
        if (c == NULL)
            return NULL;
        c->size = c->used = n;
        if (a->head != NULL) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = NULL;
            a->head = c;
        }
        return chunk_data(c);
    }

    size = a->next_size < ARENA_FIRST_CHUNK ? ARENA_FIRST_CHUNK : a->next_size;
    while (size < n)
        size *= 2;
    c = cp_malloc(ARENA_HEADER + size);
    if (c == NULL)
        return NULL;
    c->size = size;
    c->used = n;
    c->next = a->head;
    a->head = c;
    a->next_size = size * 2 > ARENA_CHUNK_MAX ? ARENA_CHUNK_MAX : size * 2;
    return chunk_data(c);
}

/*
 * Takes a block of the source into the arena (dcm_source_hand_over): it
 * holds values taken where they were read, and goes behind the current
 * chunk as one with no room, so only arena_free touches it.
 */
_Static_assert(ARENA_HEADER <= DCM_SOURCE_BLOCK_RESERVED,
               "a source block has room for an arena chunk header");

static void arena_adopt(void *ctx, void *block)
{
    arena *a = ctx;
    arena_chunk *c = block;

    c->size = c->used = 0;
    if (a->head != NULL) {
        c->next = a->head->next;
        a->head->next = c;
    } else {
        c->next = NULL;
        a->head = c;
    }
}

static void arena_free(arena *a)
{
    arena_chunk *c = a->head;

    while (c != NULL) {
        arena_chunk *next = c->next;

        cp_free(c);
        c = next;
    }
    a->head = NULL;
}

/* --- data sets ----------------------------------------------------------------- */

struct dcm_dataset {
    dcm_element *elements;
    uint32_t count;
    uint32_t item_length;
    bool sorted;
    bool big_endian;
    const dcm_dataset *parent;
};

typedef struct {
    dcm_file file;
    arena arena;
} file_impl;

static const uint8_t empty_value[1];

size_t dcm_dataset_count(const dcm_dataset *ds)
{
    return ds == NULL ? 0 : ds->count;
}

const dcm_element *dcm_dataset_at(const dcm_dataset *ds, size_t i)
{
    return ds == NULL || i >= ds->count ? NULL : &ds->elements[i];
}

const dcm_element *dcm_dataset_get(const dcm_dataset *ds, uint32_t tag)
{
    if (ds == NULL)
        return NULL;

    if (ds->sorted) {
        size_t lo = 0, hi = ds->count;

        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            uint32_t found = ds->elements[mid].tag;

            if (found == tag)
                return &ds->elements[mid];
            if (found < tag)
                lo = mid + 1;
            else
                hi = mid;
        }
        return NULL;
    }

    for (size_t i = 0; i < ds->count; i++) {
        if (ds->elements[i].tag == tag)
            return &ds->elements[i];
    }
    return NULL;
}

const dcm_dataset *dcm_dataset_parent(const dcm_dataset *ds)
{
    return ds == NULL ? NULL : ds->parent;
}

uint32_t dcm_dataset_item_length(const dcm_dataset *ds)
{
    return ds == NULL ? 0 : ds->item_length;
}

bool dcm_dataset_big_endian(const dcm_dataset *ds)
{
    return ds != NULL && ds->big_endian;
}

void dcm_dataset_charset(const dcm_dataset *ds, const uint8_t **value, size_t *len)
{
    for (; ds != NULL; ds = ds->parent) {
        const dcm_element *el = dcm_dataset_get(ds, DCM_TAG_SPECIFIC_CHARACTER_SET);

        if (el != NULL && el->value != NULL) {
            *value = el->value;
            *len = (size_t)el->value_length;
            return;
        }
    }
    *value = NULL;
    *len = 0;
}

/* --- numbers -------------------------------------------------------------------- */

typedef enum { NUM_UNSIGNED, NUM_SIGNED, NUM_FLOAT } num_kind;

/* The size and kind of one value of a VR read as numbers; 0 when it is not numeric. */
static size_t num_unit(dcm_vr vr, num_kind *kind)
{
    *kind = NUM_UNSIGNED;
    switch (vr) {
    case DCM_VR_AT: case DCM_VR_US: case DCM_VR_UL: case DCM_VR_UV:
        return dcm_vr_numeric_size(vr);
    case DCM_VR_OB:
        return 1;
    case DCM_VR_OW:
        return 2;
    case DCM_VR_OL:
        return 4;
    case DCM_VR_OV:
        return 8;
    case DCM_VR_SS: case DCM_VR_SL: case DCM_VR_SV:
        *kind = NUM_SIGNED;
        return dcm_vr_numeric_size(vr);
    case DCM_VR_FL: case DCM_VR_OF:
        *kind = NUM_FLOAT;
        return 4;
    case DCM_VR_FD: case DCM_VR_OD:
        *kind = NUM_FLOAT;
        return 8;
    default:
        return 0;
    }
}

static uint64_t load_uint(const uint8_t *b, size_t size, bool be)
{
    uint64_t v = 0;

    for (size_t i = 0; i < size; i++)
        v |= (uint64_t)b[be ? size - 1 - i : i] << (8 * i);
    return v;
}

/* The raw bits of the index-th value, in host order, with its size and kind. */
static cp_status element_bits(const dcm_dataset *ds, const dcm_element *el, size_t index,
                              uint64_t *bits, size_t *size, num_kind *kind)
{
    bool be = dcm_dataset_big_endian(ds);
    const uint8_t *b;

    if (el == NULL)
        return CP_ERR_INVALID;
    *size = num_unit(el->vr, kind);
    if (*size == 0)
        return CP_ERR_INVALID;
    if (el->value == NULL || index >= el->value_length / *size)
        return CP_ERR_NOT_FOUND;

    b = el->value + index * *size;
    if (el->vr == DCM_VR_AT)
        *bits = load_uint(b, 2, be) << 16 | load_uint(b + 2, 2, be);
    else
        *bits = load_uint(b, *size, be);
    return CP_OK;
}

static int64_t sign_extend(uint64_t bits, size_t size)
{
    if (size < 8 && (bits >> (8 * size - 1)) & 1)
        bits |= ~UINT64_C(0) << (8 * size);
    return (int64_t)bits;
}

static double float_bits(uint64_t bits, size_t size)
{
    if (size == 4) {
        uint32_t u = (uint32_t)bits;
        float f;

        memcpy(&f, &u, sizeof f);
        return f;
    }

    double d;

    memcpy(&d, &bits, sizeof d);
    return d;
}

cp_status dcm_element_get_uint(const dcm_dataset *ds, const dcm_element *el, size_t index,
                               uint64_t *out)
{
    uint64_t bits;
    size_t size;
    num_kind kind;
    cp_status st = element_bits(ds, el, index, &bits, &size, &kind);

    if (st != CP_OK)
        return st;
    if (kind == NUM_FLOAT || (kind == NUM_SIGNED && sign_extend(bits, size) < 0))
        return CP_ERR_INVALID;
    *out = bits;
    return CP_OK;
}

cp_status dcm_element_get_int(const dcm_dataset *ds, const dcm_element *el, size_t index,
                              int64_t *out)
{
    uint64_t bits;
    size_t size;
    num_kind kind;
    cp_status st = element_bits(ds, el, index, &bits, &size, &kind);

    if (st != CP_OK)
        return st;
    if (kind == NUM_FLOAT || (kind == NUM_UNSIGNED && bits > INT64_MAX))
        return CP_ERR_INVALID;
    *out = kind == NUM_SIGNED ? sign_extend(bits, size) : (int64_t)bits;
    return CP_OK;
}

cp_status dcm_element_get_double(const dcm_dataset *ds, const dcm_element *el, size_t index,
                                 double *out)
{
    uint64_t bits;
    size_t size;
    num_kind kind;
    cp_status st = element_bits(ds, el, index, &bits, &size, &kind);

    if (st != CP_OK)
        return st;
    if (kind == NUM_FLOAT)
        *out = float_bits(bits, size);
    else if (kind == NUM_SIGNED)
        *out = (double)sign_extend(bits, size);
    else
        *out = (double)bits;
    return CP_OK;
}

/* --- strings --------------------------------------------------------------------- */

static bool keeps_leading_spaces(dcm_vr vr)
{
    return vr == DCM_VR_LT || vr == DCM_VR_ST || vr == DCM_VR_UT || vr == DCM_VR_UR;
}

/* The bounds of the index-th value of a string element, before trimming. */
static bool string_slice(const dcm_element *el, size_t index, size_t *start, size_t *end)
{
    const uint8_t *v = el->value;
    size_t len = (size_t)el->value_length;
    size_t s = 0;

    if (!dcm_vr_is_multi_valued_string(el->vr)) {
        *start = 0;
        *end = len;
        return index == 0;
    }

    for (size_t i = 0; i < index; i++) {
        const uint8_t *sep = memchr(v + s, '\\', len - s);

        if (sep == NULL)
            return false;
        s = (size_t)(sep - v) + 1;
    }
    *start = s;
    *end = len;
    {
        const uint8_t *sep = memchr(v + s, '\\', len - s);

        if (sep != NULL)
            *end = (size_t)(sep - v);
    }
    return true;
}

size_t dcm_element_string_count(const dcm_element *el)
{
    size_t count = 1;
    size_t i;

    if (el == NULL || !dcm_vr_is_string(el->vr) || el->value == NULL)
        return 0;
    for (i = 0; i < el->value_length; i++) {
        if (el->value[i] != ' ' && el->value[i] != '\0')
            break;
    }
    if (i == el->value_length)
        return 0;
    if (!dcm_vr_is_multi_valued_string(el->vr))
        return 1;
    for (i = 0; i < el->value_length; i++)
        count += el->value[i] == '\\';
    return count;
}

/* Whether a string element has no value: nothing, or only padding. */
static bool string_blank(const dcm_element *el)
{
    for (size_t i = 0; i < el->value_length; i++) {
        if (el->value[i] != ' ' && el->value[i] != '\0')
            return false;
    }
    return true;
}

cp_status dcm_element_get_string(const dcm_element *el, size_t index, const char **text,
                                 size_t *len)
{
    size_t start, end;
    bool missing;

    if (el == NULL || !dcm_vr_is_string(el->vr))
        return CP_ERR_INVALID;

    /* The first value, asked for most, needs no count of the others. */
    if (index == 0)
        missing = el->value == NULL || string_blank(el);
    else
        missing = index >= dcm_element_string_count(el);
    if (missing || !string_slice(el, index, &start, &end))
        return CP_ERR_NOT_FOUND;

    while (end > start && (el->value[end - 1] == ' ' || el->value[end - 1] == '\0'))
        end--;
    if (!keeps_leading_spaces(el->vr)) {
        while (start < end && el->value[start] == ' ')
            start++;
    }
    *text = (const char *)el->value + start;
    *len = end - start;
    return CP_OK;
}

cp_status dcm_dataset_get_string(const dcm_dataset *ds, uint32_t tag, char *out, size_t size)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);
    const char *text;
    size_t len;
    cp_status st;

    if (size == 0)
        return CP_ERR_INVALID;
    out[0] = '\0';
    if (el == NULL)
        return CP_ERR_NOT_FOUND;
    st = dcm_element_get_string(el, 0, &text, &len);
    if (st != CP_OK)
        return st;
    if (len == 0)
        return CP_ERR_NOT_FOUND;
    if (len > size - 1)
        len = size - 1;
    memcpy(out, text, len);
    out[len] = '\0';
    return CP_OK;
}

cp_status dcm_element_read_value(const dcm_element *el, dcm_source *src, cp_buf *out,
                                 cp_error *err)
{
    size_t got;
    cp_status st;

    if (el == NULL || (el->vr == DCM_VR_SQ && !(el->flags & DCM_ELEMENT_ENCAPSULATED)))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "a sequence has no value to read");
    cp_buf_reset(out);
    if (el->value_length > DCM_VALUE_LOAD_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, (int64_t)el->offset, el->tag,
                            "value length %llu exceeds the load limit of %u bytes",
                            (unsigned long long)el->value_length, DCM_VALUE_LOAD_MAX);
    if (el->value != NULL) {
        st = cp_buf_append(out, el->value, (size_t)el->value_length);
        if (st != CP_OK)
            return cp_error_set(err, st, (int64_t)el->offset, el->tag, NULL);
    } else {
        if (src == NULL)
            return cp_error_set(err, CP_ERR_INVALID, (int64_t)el->offset, el->tag,
                                "the value is not loaded and there is no source");
        st = cp_buf_reserve(out, (size_t)el->value_length);
        if (st != CP_OK)
            return cp_error_set(err, st, (int64_t)el->offset, el->tag, NULL);
        st = dcm_source_pread(src, el->offset, out->data, (size_t)el->value_length, &got);
        if (st != CP_OK)
            return cp_error_set(err, st, (int64_t)el->offset, el->tag,
                                "reading the value failed");
        out->len = got;
        out->data[got] = '\0';
        if (got < el->value_length)
            return cp_error_set(err, CP_ERR_TRUNCATED, (int64_t)el->offset, el->tag,
                                "value length %llu exceeds the %zu bytes left",
                                (unsigned long long)el->value_length, got);
    }

    /* What there was of a value cut short by the end of the input. */
    if (el->flags & DCM_ELEMENT_TRUNCATED)
        return cp_error_set(err, CP_ERR_TRUNCATED, (int64_t)el->offset, el->tag,
                            "value length %u exceeds the %llu bytes read", el->length,
                            (unsigned long long)el->value_length);
    return CP_OK;
}

/* --- building the tree from parser events ----------------------------------------- */

#define BUILDER_FRAMES_MAX (2 * DCM_SEQUENCE_DEPTH_MAX + 2)
/*
 * Frames kept in the builder itself, as in parser.c: a builder this small
 * comes from the allocator's per-thread cache; deeper nesting moves the
 * frames to an array of BUILDER_FRAMES_MAX.
 */
#define BUILDER_FRAMES_INLINE 8

/* First scratch of a depth; it doubles as needed and is reused by later items. */
#define SCRATCH_FIRST (2u * 1024)
/*
 * First scratch of the top level of the main data set, which is filled once
 * and then handed to the arena (scratch_adopt): room for the 200 or so
 * elements of a modality's header without growing.
 */
#define SCRATCH_FIRST_TOP (16u * 1024)

enum { BF_DATASET, BF_SEQUENCE, BF_FRAGMENTS };

typedef struct {
    void *data;
    size_t len;             /* entries */
    size_t cap;             /* bytes */
} scratch;

typedef struct {
    int kind;
    dcm_dataset *ds;        /* BF_DATASET: the data set being filled */
    uint32_t last_tag;      /* BF_DATASET: to see whether elements come sorted */
    size_t element;         /* otherwise: index of the element in the data set below */
    scratch v;              /* elements, item pointers or fragments */
} build_frame;

typedef struct {
    arena *arena;
    dcm_parser *parser;
    dcm_source *src;
    bool can_pread;
    bool inflated;          /* reading a deflated data set: offsets count inflated bytes */
    uint32_t threshold;
    bool meta;              /* reading group 0002: stop where it ends */
    uint64_t meta_start;
    uint64_t meta_end;      /* end given by (0002,0000), or 0 */
    uint32_t nframes;
    uint32_t used;          /* frames whose scratch has been set up */
    build_frame *frames;    /* frames_inline, or BUILDER_FRAMES_MAX of them on the heap */
    build_frame frames_inline[BUILDER_FRAMES_INLINE];
} builder;

/*
 * A scratch block starts with room for an arena chunk header, so that the
 * top-level data set's elements, the largest block, move into the arena by
 * linking the block in (scratch_adopt) instead of being copied.
 */
static arena_chunk *scratch_chunk(const scratch *s)
{
    return s->data == NULL ? NULL : (arena_chunk *)((uint8_t *)s->data - ARENA_HEADER);
}

static void scratch_free(scratch *s)
{
    cp_free(scratch_chunk(s));
    s->data = NULL;
    s->cap = 0;
}

/* cap counts bytes: the scratch of a depth serves sequences and fragments in turn. */
static void *scratch_push(scratch *s, size_t size, size_t first)
{
    if ((s->len + 1) * size > s->cap) {
        size_t cap = s->cap == 0 ? first : s->cap * 2;
        uint8_t *grown;

        while (cap < (s->len + 1) * size)
            cap *= 2;
        grown = cp_realloc(scratch_chunk(s), ARENA_HEADER + cap);
        if (grown == NULL)
            return NULL;
        s->data = grown + ARENA_HEADER;
        s->cap = cap;
    }
    return (uint8_t *)s->data + s->len++ * size;
}

/*
 * Moves the entries of s into the arena without copying them: the block
 * (trimmed to what is used) becomes a chunk of its own, behind the current
 * one, and s starts over empty. NULL for none (or on OOM, s unchanged).
 */
static void *scratch_adopt(arena *a, scratch *s, size_t size)
{
    size_t used = s->len * size;
    arena_chunk *c;

    if (s->len == 0)
        return NULL;
    c = cp_realloc(scratch_chunk(s), ARENA_HEADER + used);
    if (c == NULL)
        return NULL;
    c->size = c->used = used;
    if (a->head != NULL) {
        c->next = a->head->next;
        a->head->next = c;
    } else {
        c->next = NULL;
        a->head = c;
    }
    s->data = NULL;
    s->cap = 0;
    return chunk_data(c);
}

/* A copy in the arena of the n entries of s; NULL for none (or on OOM). */
static void *scratch_keep(builder *b, const scratch *s, size_t size)
{
    void *copy;

    if (s->len == 0)
        return NULL;
    copy = arena_alloc(b->arena, s->len * size);
    if (copy != NULL)
        memcpy(copy, s->data, s->len * size);
    return copy;
}

static build_frame *builder_top(builder *b)
{
    return &b->frames[b->nframes - 1];
}

/* Opens a frame; NULL when the frames must move to the heap and cannot. */
static build_frame *builder_push(builder *b, int kind)
{
    build_frame *f;

    if (b->nframes == BUILDER_FRAMES_INLINE && b->frames == b->frames_inline) {
        build_frame *all = cp_malloc(BUILDER_FRAMES_MAX * sizeof *all);

        if (all == NULL)
            return NULL;
        memcpy(all, b->frames_inline, sizeof b->frames_inline);
        b->frames = all;
    }
    f = &b->frames[b->nframes++];
    if (b->nframes > b->used) {
        f->v.data = NULL;
        f->v.cap = 0;
        b->used = b->nframes;
    }
    f->kind = kind;
    f->ds = NULL;
    f->last_tag = 0;
    f->element = 0;
    f->v.len = 0;
    return f;
}

static cp_status builder_nomem(cp_error *err, const dcm_event *ev)
{
    return cp_error_set(err, CP_ERR_NOMEM, (int64_t)ev->header_offset, ev->tag, NULL);
}

/* Closes the innermost frame, moving what it collected into the arena. */
static cp_status builder_close(builder *b, uint64_t end_offset)
{
    build_frame *f = builder_top(b);
    cp_status st = CP_OK;

    if (f->kind == BF_DATASET) {
        f->ds->count = (uint32_t)f->v.len;
        if (b->nframes == 1)
            f->ds->elements = scratch_adopt(b->arena, &f->v, sizeof(dcm_element));
        else
            f->ds->elements = scratch_keep(b, &f->v, sizeof(dcm_element));
        if (f->v.len > 0 && f->ds->elements == NULL) {
            f->ds->count = 0;
            st = CP_ERR_NOMEM;
        }
    } else {
        dcm_element *el = (dcm_element *)b->frames[b->nframes - 2].v.data + f->element;

        el->value_length = end_offset - el->offset;
        if (f->kind == BF_SEQUENCE) {
            el->item_count = (uint32_t)f->v.len;
            el->items = scratch_keep(b, &f->v, sizeof(dcm_dataset *));
            if (f->v.len > 0 && el->items == NULL) {
                el->item_count = 0;
                st = CP_ERR_NOMEM;
            }
        } else {
            el->fragment_count = (uint32_t)f->v.len;
            el->fragments = scratch_keep(b, &f->v, sizeof(dcm_fragment));
            if (f->v.len > 0 && el->fragments == NULL) {
                el->fragment_count = 0;
                st = CP_ERR_NOMEM;
            }
        }
    }
    b->nframes--;
    return st;
}

/* Reads a value of unknown size in pieces, so a lying length costs no big allocation. */
static cp_status builder_stream_value(builder *b, const dcm_event *ev, const uint8_t **data,
                                      uint64_t *value_length, cp_error *err)
{
    cp_buf piece = CP_BUF_INIT;
    uint8_t *copy;
    size_t got;
    cp_status st = CP_OK;

    while (dcm_parser_value_left(b->parser) > 0) {
        uint64_t left = dcm_parser_value_left(b->parser);
        size_t n = left < STREAM_VALUE_PIECE ? (size_t)left : STREAM_VALUE_PIECE;

        st = cp_buf_reserve(&piece, n);
        if (st != CP_OK) {
            st = builder_nomem(err, ev);
            goto done;
        }
        st = dcm_parser_read_value(b->parser, piece.data + piece.len, n, &got, err);
        piece.len += got;
        if (st != CP_OK || got == 0)
            break;
    }

    copy = arena_alloc(b->arena, piece.len);
    if (copy == NULL) {
        st = builder_nomem(err, ev);
        goto done;
    }
    memcpy(copy, piece.data, piece.len);
    *data = copy;
    *value_length = piece.len;

done:
    cp_buf_free(&piece);
    return st;
}

/*
 * Loads the value of the current ELEMENT or FRAGMENT, or leaves it in the
 * source when it is long and the source can be read again later.
 */
static cp_status builder_value(builder *b, const dcm_event *ev, const uint8_t **data,
                               uint64_t *value_length, uint32_t *flags, cp_error *err)
{
    /* The meta group and Specific Character Set are needed to read the rest. */
    bool load = !b->can_pread || ev->length <= b->threshold || b->meta ||
                ev->tag == DCM_TAG_SPECIFIC_CHARACTER_SET;
    uint8_t *copy;
    uint64_t size;
    size_t got;
    cp_status st;

    *data = NULL;
    *value_length = ev->available;
    if (load && ev->available > DCM_VALUE_LOAD_MAX) {
        if (!b->can_pread)
            return cp_error_set(err, CP_ERR_LIMIT, (int64_t)ev->header_offset, ev->tag,
                                "value length %u exceeds the load limit of %u bytes",
                                ev->length, DCM_VALUE_LOAD_MAX);
        load = false;
    }
    if (!load) {
        *flags |= DCM_ELEMENT_NOT_LOADED;
        return CP_OK;
    }
    if (ev->available == 0) {
        *data = empty_value;
        return CP_OK;
    }
    /*
     * A short value of a file stays where it was read, in the source's
     * buffer, which the file adopts at the end (dcm_file_read): no copy and
     * no allocation per value.
     */
    if (ev->available <= DCM_SOURCE_TAKE_MAX) {
        st = dcm_parser_take_value(b->parser, data, err);
        if (st != CP_ERR_UNSUPPORTED) {
            if (st != CP_OK) {
                *data = empty_value;
                *value_length = 0;
            }
            return st;
        }
    }

    /* The size is asked for only here: a file learns it with a system call. */
    if (ev->available > STREAM_VALUE_PIECE && !dcm_source_size(b->src, &size))
        return builder_stream_value(b, ev, data, value_length, err);

    copy = arena_alloc(b->arena, (size_t)ev->available);
    if (copy == NULL)
        return builder_nomem(err, ev);
    st = dcm_parser_read_value(b->parser, copy, (size_t)ev->available, &got, err);
    *data = copy;
    *value_length = got;
    return st;
}

static cp_status builder_element(builder *b, const dcm_event *ev, cp_error *err)
{
    build_frame *f = builder_top(b);
    dcm_element *el = scratch_push(&f->v, sizeof *el, b->nframes == 1 && !b->meta ?
                                                      SCRATCH_FIRST_TOP : SCRATCH_FIRST);
    cp_status st;

    if (el == NULL)
        return builder_nomem(err, ev);
    memset(el, 0, sizeof *el);
    el->tag = ev->tag;
    el->vr = ev->vr;
    el->flags = ev->flags | (b->inflated ? DCM_ELEMENT_INFLATED : 0);
    el->length = ev->length;
    el->offset = ev->offset;
    if (ev->tag < f->last_tag)
        f->ds->sorted = false;
    f->last_tag = ev->tag;

    if (ev->type == DCM_EVENT_SEQUENCE_BEGIN) {
        size_t index = f->v.len - 1;
        build_frame *child = builder_push(b, ev->flags & DCM_ELEMENT_ENCAPSULATED ?
                                             BF_FRAGMENTS : BF_SEQUENCE);

        if (child == NULL)
            return builder_nomem(err, ev);
        child->element = index;
        return CP_OK;
    }

    st = builder_value(b, ev, &el->value, &el->value_length, &el->flags, err);
    if (st == CP_ERR_TRUNCATED)
        el->flags |= DCM_ELEMENT_TRUNCATED;
    if (st == CP_OK && ev->tag == DCM_TAG_FILE_META_GROUP_LENGTH && b->meta &&
        b->nframes == 1 && el->value != NULL && el->value_length == 4) {
        uint32_t length = (uint32_t)el->value[0] | (uint32_t)el->value[1] << 8 |
                          (uint32_t)el->value[2] << 16 | (uint32_t)el->value[3] << 24;

        if (length <= DCM_META_GROUP_MAX)
            b->meta_end = ev->offset + 4 + length;
    }
    return st;
}

static cp_status builder_item(builder *b, const dcm_event *ev, cp_error *err)
{
    build_frame *seq = builder_top(b);
    const dcm_dataset *parent = b->frames[b->nframes - 2].ds;
    dcm_dataset **slot = scratch_push(&seq->v, sizeof *slot, SCRATCH_FIRST);
    dcm_dataset *ds = arena_alloc(b->arena, sizeof *ds);
    build_frame *f;

    if (slot == NULL || ds == NULL) {
        if (slot != NULL)
            seq->v.len--;
        return builder_nomem(err, ev);
    }
    memset(ds, 0, sizeof *ds);
    ds->sorted = true;
    ds->big_endian = ev->big_endian;
    ds->item_length = ev->length;
    ds->parent = parent;
    *slot = ds;

    f = builder_push(b, BF_DATASET);
    if (f == NULL)
        return builder_nomem(err, ev);
    f->ds = ds;
    return CP_OK;
}

static cp_status builder_fragment(builder *b, const dcm_event *ev, cp_error *err)
{
    build_frame *f = builder_top(b);
    dcm_fragment *frag = scratch_push(&f->v, sizeof *frag, SCRATCH_FIRST);
    uint64_t value_length;
    uint32_t flags = 0;
    cp_status st;

    if (frag == NULL)
        return builder_nomem(err, ev);
    frag->offset = ev->offset;
    frag->length = ev->length;
    frag->data = NULL;
    st = builder_value(b, ev, &frag->data, &value_length, &flags, err);
    if (frag->data != NULL && value_length < ev->length)
        frag->length = (uint32_t)value_length;
    return st;
}

/* In the meta group, whether the next top-level element still belongs to it. */
static bool builder_meta_continues(builder *b, cp_error *err, cp_status *st)
{
    const build_frame *f = builder_top(b);
    uint64_t offset;
    uint32_t tag;

    *st = dcm_parser_peek_tag(b->parser, &tag, err);
    if (*st == CP_ERR_NOT_FOUND) {
        *st = CP_OK;
        return false;
    }
    if (*st != CP_OK || DCM_TAG_GROUP(tag) != 0x0002)
        return false;

    offset = dcm_source_offset(b->src);
    if (offset - b->meta_start > DCM_META_GROUP_MAX) {
        *st = cp_error_set(err, CP_ERR_LIMIT, (int64_t)offset, tag,
                           "the File Meta Information group exceeds %u bytes",
                           DCM_META_GROUP_MAX);
        return false;
    }

    /* A deflated data set ends the group where its length says, whatever its first bytes. */
    for (size_t i = 0; b->meta_end != 0 && i < f->v.len; i++) {
        const dcm_element *el = (const dcm_element *)f->v.data + i;
        const dcm_transfer_syntax *ts;

        if (el->tag != DCM_TAG_TRANSFER_SYNTAX_UID || el->value == NULL)
            continue;
        ts = dcm_ts_lookup((const char *)el->value, (size_t)el->value_length);
        if (ts != NULL && ts->deflated && offset >= b->meta_end)
            return false;
    }
    return true;
}

/* Handles events until the data set ends; *stopped tells whether at stop_before. */
static cp_status builder_run(builder *b, bool *stopped, cp_error *err)
{
    dcm_event ev;
    cp_status st;

    *stopped = false;
    for (;;) {
        if (b->meta && b->nframes == 1) {
            if (!builder_meta_continues(b, err, &st))
                return st;
        }

        st = dcm_parser_next(b->parser, &ev, err);
        if (st != CP_OK) {
            /* Keep what there was of a value cut short. */
            if (ev.flags & DCM_ELEMENT_TRUNCATED) {
                if (ev.type == DCM_EVENT_ELEMENT)
                    builder_element(b, &ev, NULL);
                else if (ev.type == DCM_EVENT_FRAGMENT)
                    builder_fragment(b, &ev, NULL);
            }
            return st;
        }

        switch (ev.type) {
        case DCM_EVENT_ELEMENT:
        case DCM_EVENT_SEQUENCE_BEGIN:
            st = builder_element(b, &ev, err);
            break;
        case DCM_EVENT_ITEM_BEGIN:
            st = builder_item(b, &ev, err);
            break;
        case DCM_EVENT_FRAGMENT:
            st = builder_fragment(b, &ev, err);
            break;
        case DCM_EVENT_ITEM_END:
        case DCM_EVENT_SEQUENCE_END:
            st = builder_close(b, ev.offset);
            if (st != CP_OK)
                st = builder_nomem(err, &ev);
            break;
        case DCM_EVENT_END:
            *stopped = ev.stopped;
            return CP_OK;
        }
        if (st != CP_OK)
            return st;
    }
}

/* A builder for one dcm_file_read: the meta group and the data set share its scratch. */
static builder *builder_create(file_impl *fi, const dcm_read_options *opts)
{
    builder *b = cp_malloc(sizeof *b);

    if (b == NULL)
        return NULL;
    memset(b, 0, offsetof(builder, frames_inline));
    b->frames = b->frames_inline;
    b->arena = &fi->arena;
    b->threshold = opts->bulk_threshold == 0 ? DCM_BULK_THRESHOLD_DEFAULT
                                             : opts->bulk_threshold;
    return b;
}

static void builder_destroy(builder *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->used; i++)
        scratch_free(&b->frames[i].v);
    if (b->frames != b->frames_inline)
        cp_free(b->frames);
    cp_free(b);
}

/*
 * Reads one data set (the meta group or the main one) from src into ds.
 * On failure ds still holds everything read up to the failure.
 */
static cp_status read_dataset(builder *b, dcm_source *src, const dcm_parser_options *popts,
                              bool meta, dcm_dataset *ds, uint32_t *parser_flags,
                              bool *stopped, cp_error *err)
{
    build_frame *root;
    cp_status st, closing = CP_OK;

    *stopped = false;
    *parser_flags = 0;
    b->src = src;
    b->parser = NULL;
    b->can_pread = dcm_source_can_pread(src);
    b->meta = meta;
    b->meta_start = dcm_source_offset(src);
    b->meta_end = 0;
    b->nframes = 0;
    root = builder_push(b, BF_DATASET);
    root->ds = ds;

    st = dcm_parser_create(src, popts, &b->parser);
    if (st != CP_OK) {
        st = cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
        goto done;
    }
    st = builder_run(b, stopped, err);
    *parser_flags = dcm_parser_flags(b->parser);

done:
    /* Whatever is still open (after an error) is closed so the tree stays whole. */
    while (b->nframes > 0) {
        cp_status cs = builder_close(b, dcm_source_offset(src));

        if (closing == CP_OK)
            closing = cs;
    }
    if (st == CP_OK && closing != CP_OK)
        st = cp_error_set(err, closing, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
    dcm_parser_destroy(b->parser);
    b->parser = NULL;
    return st;
}

/* --- Part 10 files ------------------------------------------------------------------ */

static dcm_dataset *new_dataset(file_impl *fi, bool big_endian)
{
    dcm_dataset *ds = arena_alloc(&fi->arena, sizeof *ds);

    if (ds == NULL)
        return NULL;
    memset(ds, 0, sizeof *ds);
    ds->sorted = true;
    ds->big_endian = big_endian;
    return ds;
}

/* Where the meta group starts, if there is one, and what the file flags become. */
static cp_status find_meta(dcm_source *src, file_impl *fi, bool *has_meta, cp_error *err)
{
    uint8_t head[132];
    size_t got;
    size_t skip = 0;
    cp_status st;

    *has_meta = false;
    st = dcm_source_peek(src, head, sizeof head, &got);
    if (st != CP_OK)
        return cp_error_set(err, st, 0, CP_ERROR_NO_TAG, "reading the input failed");
    if (got == 0)
        return cp_error_set(err, CP_ERR_MALFORMED, 0, CP_ERROR_NO_TAG, "the input is empty");

    if (got >= 132 && memcmp(head + 128, "DICM", 4) == 0) {
        memcpy(fi->file.preamble, head, 128);
        skip = 132;
    } else if (got >= 4 && memcmp(head, "DICM", 4) == 0) {
        fi->file.flags |= DCM_FILE_NO_PREAMBLE;
        skip = 4;
    } else if (got >= 132 && memcmp(head, "\0\0\0\0", 4) == 0 && head[128] == 0x02 &&
               head[129] == 0x00 && head[130] <= 0x01 && head[131] == 0x00) {
        /* A zero-filled preamble, then group 0002 with no "DICM". */
        memcpy(fi->file.preamble, head, 128);
        fi->file.flags |= DCM_FILE_NO_PREAMBLE;
        skip = 128;
    } else if (got >= 8 && head[0] == 0x02 && head[1] == 0x00 && head[3] == 0x00) {
        fi->file.flags |= DCM_FILE_NO_PREAMBLE;
    } else {
        return CP_OK;
    }

    *has_meta = true;
    st = dcm_source_skip(src, skip);
    if (st != CP_OK)
        return cp_error_set(err, st, 0, CP_ERROR_NO_TAG, "reading the input failed");
    return CP_OK;
}

static const dcm_transfer_syntax *guess_ts(dcm_source *src)
{
    uint8_t head[8];
    size_t got;
    bool explicit_vr, big_endian;

    if (dcm_source_peek(src, head, sizeof head, &got) != CP_OK)
        return &dcm_ts_implicit_le;
    dcm_parser_guess_syntax(head, got, &explicit_vr, &big_endian);
    if (!explicit_vr)
        return &dcm_ts_implicit_le;
    return big_endian ? &dcm_ts_explicit_be : &dcm_ts_explicit_le;
}

static cp_status read_meta(file_impl *fi, builder *b, dcm_source *src, cp_error *err)
{
    dcm_parser_options popts = { .explicit_vr = true, .detect_vr = true };
    uint32_t parser_flags;
    bool stopped;
    cp_status st;

    fi->file.meta = new_dataset(fi, false);
    if (fi->file.meta == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
    st = read_dataset(b, src, &popts, true, fi->file.meta, &parser_flags, &stopped, err);
    if (parser_flags & DCM_PARSER_STRAY_DELIMITER)
        fi->file.flags |= DCM_FILE_STRAY_DELIMITER;
    return st;
}

static const dcm_transfer_syntax *meta_ts(const dcm_dataset *meta)
{
    const dcm_element *el = dcm_dataset_get(meta, DCM_TAG_TRANSFER_SYNTAX_UID);

    if (el == NULL || el->value == NULL)
        return NULL;
    return dcm_ts_lookup((const char *)el->value, (size_t)el->value_length);
}

static cp_status read_body(file_impl *fi, builder *b, dcm_source *src,
                           const dcm_read_options *opts, const dcm_transfer_syntax *ts,
                           bool declared, cp_error *err)
{
    dcm_parser_options popts = { 0 };
    dcm_source *inflated = NULL;
    uint32_t parser_flags;
    bool stopped;
    cp_status st;

    fi->file.transfer_syntax = ts;
    fi->file.dataset_offset = dcm_source_offset(src);
    if (ts->deflated) {
        st = dcm_source_inflate(src, &inflated);
        if (st != CP_OK)
            return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
        src = inflated;
        b->inflated = true;
    }

    popts.explicit_vr = ts->explicit_vr;
    popts.big_endian = ts->big_endian;
    popts.stop_before = opts->stop_before;
    popts.detect_vr = declared;
    st = read_dataset(b, src, &popts, false, fi->file.dataset, &parser_flags, &stopped,
                      err);

    if (stopped)
        fi->file.flags |= DCM_FILE_STOPPED;
    if (parser_flags & DCM_PARSER_STRAY_DELIMITER)
        fi->file.flags |= DCM_FILE_STRAY_DELIMITER;
    if (parser_flags & DCM_PARSER_SYNTAX_MISMATCH) {
        fi->file.flags |= DCM_FILE_TS_MISMATCH;
        if (!ts->big_endian)
            fi->file.transfer_syntax = ts->explicit_vr ? &dcm_ts_implicit_le
                                                       : &dcm_ts_explicit_le;
    }
    dcm_source_destroy(inflated);
    return st;
}

/*
 * dcm_file_read; last tells that src will only be destroyed afterwards, so
 * that the buffer holding the values goes to the file as it is.
 */
static cp_status file_read(dcm_source *src, const dcm_read_options *opts, bool last,
                           dcm_file **out, cp_error *err)
{
    static const dcm_read_options defaults = { 0 };
    const dcm_transfer_syntax *ts;
    builder *b = NULL;
    file_impl *fi;
    bool has_meta = false, declared = false;
    cp_status st;

    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    fi = cp_calloc(1, sizeof *fi);
    if (fi == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);

    if (!opts->no_meta) {
        st = find_meta(src, fi, &has_meta, err);
        if (st != CP_OK) {
            dcm_file_destroy(&fi->file);
            return st;
        }
    }

    fi->file.dataset = new_dataset(fi, false);
    b = builder_create(fi, opts);
    if (fi->file.dataset == NULL || b == NULL) {
        builder_destroy(b);
        dcm_file_destroy(&fi->file);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
    }

    if (has_meta) {
        st = read_meta(fi, b, src, err);
        if (st != CP_OK)
            goto done;
        ts = meta_ts(fi->file.meta);
        declared = ts != NULL;
    } else {
        fi->file.flags |= DCM_FILE_NO_META;
        ts = opts->assume_ts;
        declared = ts != NULL;
    }
    if (ts == NULL)
        ts = guess_ts(src);
    fi->file.dataset->big_endian = ts->big_endian;
    st = read_body(fi, b, src, opts, ts, declared, err);

done:
    builder_destroy(b);
    /* The values taken where they were read live on in the source's buffers. */
    dcm_source_hand_over(src, last, arena_adopt, &fi->arena);
    if (fi->file.transfer_syntax == NULL)
        fi->file.transfer_syntax = &dcm_ts_explicit_le;
    if (st != CP_OK)
        fi->file.flags |= DCM_FILE_PARTIAL;
    *out = &fi->file;
    return st;
}

cp_status dcm_file_read(dcm_source *src, const dcm_read_options *opts, dcm_file **out,
                        cp_error *err)
{
    return file_read(src, opts, false, out, err);
}

cp_status dcm_file_read_path(const char *path, const dcm_read_options *opts, dcm_file **out,
                             cp_error *err)
{
    return dcm_file_read_path_at(AT_FDCWD, path, opts, out, err);
}

cp_status dcm_file_read_path_at(int dirfd, const char *path, const dcm_read_options *opts,
                                dcm_file **out, cp_error *err)
{
    dcm_source *src;
    cp_status st;

    *out = NULL;
    st = dcm_source_open_file_at(dirfd, path, &src, err);
    if (st != CP_OK)
        return st;
    st = file_read(src, opts, true, out, err);
    dcm_source_destroy(src);
    return st;
}

void dcm_file_destroy(dcm_file *file)
{
    file_impl *fi = (file_impl *)file;

    if (file == NULL)
        return;
    arena_free(&fi->arena);
    cp_free(fi);
}
