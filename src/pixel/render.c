/*
 * render.c - decoded frames to 8-bit pictures: the grayscale pipeline of
 * PS3.3 C.11 (Modality LUT C.11.1, VOI LUT and window functions C.11.2,
 * Presentation LUT C.11.6) and colour by PS3.3 C.7.6.3.1.2 (YBR to RGB) and
 * C.7.6.3.1.5 (palette colour), then scaling to a viewport.
 *
 * For samples of up to 16 bits the whole grayscale pipeline is folded into
 * one table from stored value to output byte, built once per render, so
 * that a frame costs one lookup per pixel. Scaling is separable, in fixed
 * point: an area average over the source footprint when shrinking (every
 * source pixel weighs by the part of it an output pixel covers) and
 * bilinear interpolation when enlarging.
 *
 * MONOCHROME1 and a Presentation LUT Shape of INVERSE both mean "invert"
 * (a MONOCHROME1 image is expected to say INVERSE; the two do not cancel);
 * the request's invert flips the result once more.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "dicom/dict_tags.h"
#include "pixel/render.h"

/* A lookup table from a LUT sequence item (PS3.3 C.11.1.1 and C.11.2.1.1). */
typedef struct {
    bool present;
    uint32_t entries;
    int64_t first;          /* as stored (US or SS); see lut_first */
    bool first_is_ss;
    uint16_t bits;
    uint16_t *data;
} render_lut;

struct px_presentation {
    bool has_rescale;
    double slope;
    double intercept;
    char rescale_type[17];
    render_lut modality_lut;
    bool has_window;
    double window_center;
    double window_width;
    px_voi_function voi_function;
    render_lut voi_lut;
    bool inverse;
};

/* Longest DS (16) or CS (16) value parsed, with room to spare. */
#define RENDER_TEXT_MAX 64

/* Fixed-point precision of the scaling weights (they sum to 1 << RENDER_WEIGHT_BITS). */
#define RENDER_WEIGHT_BITS 14

static bool render_string(const dcm_dataset *ds, uint32_t tag, char *out, size_t size)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);
    const char *text;
    size_t len;

    if (el == NULL || dcm_element_get_string(el, 0, &text, &len) != CP_OK || len == 0 ||
        len >= size)
        return false;
    memcpy(out, text, len);
    out[len] = '\0';
    return true;
}

static bool render_double(const dcm_dataset *ds, uint32_t tag, double *out)
{
    char text[RENDER_TEXT_MAX];
    char *end;
    double v;

    if (!render_string(ds, tag, text, sizeof(text)))
        return false;
    v = strtod(text, &end);
    if (end == text || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* The first item of sequence `tag` in ds, or NULL. */
static const dcm_dataset *render_item(const dcm_dataset *ds, uint32_t tag, uint32_t index)
{
    const dcm_element *el = ds == NULL ? NULL : dcm_dataset_get(ds, tag);

    if (el == NULL || el->vr != DCM_VR_SQ || index >= el->item_count)
        return NULL;
    return el->items[index];
}

static cp_status render_lut_read(const dcm_dataset *item, dcm_source *src, render_lut *lut,
                                 cp_error *err)
{
    const dcm_element *desc = dcm_dataset_get(item, DCM_LUTDescriptor);
    const dcm_element *data = dcm_dataset_get(item, DCM_LUTData);
    bool big = dcm_dataset_big_endian(item);
    uint64_t entries, bits;
    int64_t first;
    cp_buf bytes = CP_BUF_INIT;
    const uint8_t *p;
    size_t have;
    cp_status st = CP_OK;

    if (desc == NULL || data == NULL || dcm_element_get_uint(item, desc, 0, &entries) != CP_OK ||
        dcm_element_get_int(item, desc, 1, &first) != CP_OK ||
        dcm_element_get_uint(item, desc, 2, &bits) != CP_OK)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, DCM_LUTDescriptor,
                            "LUT without a complete descriptor or data");
    if (entries == 0)
        entries = 65536;
    if (entries > 65536 || bits < 1 || bits > 16)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, DCM_LUTDescriptor,
                            "LUT of %llu entries of %llu bits", (unsigned long long)entries,
                            (unsigned long long)bits);

    p = data->value;
    have = data->value == NULL ? 0 : (size_t)data->value_length;
    if (data->value == NULL && src != NULL) {
        st = dcm_element_read_value(data, src, &bytes, err);
        if (st != CP_OK)
            goto done;
        p = bytes.data;
        have = bytes.len;
    }
    if (have < entries * 2) {
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, DCM_LUTData,
                          "LUT Data of %zu bytes for %llu entries", have,
                          (unsigned long long)entries);
        goto done;
    }

    lut->data = cp_malloc((size_t)entries * sizeof(uint16_t));
    if (lut->data == NULL) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, DCM_LUTData, "LUT");
        goto done;
    }
    for (size_t i = 0; i < entries; i++)
        lut->data[i] = big ? (uint16_t)(p[2 * i] << 8 | p[2 * i + 1])
                           : (uint16_t)(p[2 * i + 1] << 8 | p[2 * i]);
    lut->present = true;
    lut->entries = (uint32_t)entries;
    lut->first = first;
    lut->first_is_ss = desc->vr == DCM_VR_SS;
    lut->bits = (uint16_t)bits;

done:
    cp_buf_free(&bytes);
    return st;
}

static px_voi_function render_voi_function(const dcm_dataset *ds)
{
    char text[RENDER_TEXT_MAX];

    if (!render_string(ds, DCM_VOILUTFunction, text, sizeof(text)))
        return PX_VOI_LINEAR;
    if (strcmp(text, "LINEAR_EXACT") == 0)
        return PX_VOI_LINEAR_EXACT;
    if (strcmp(text, "SIGMOID") == 0)
        return PX_VOI_SIGMOID;
    return PX_VOI_LINEAR;
}

/* Reads what one level (the data set, or a functional group item) says; later levels win. */
static cp_status render_read_level(const dcm_dataset *ds, const dcm_dataset *pvt,
                                   const dcm_dataset *voi, dcm_source *src,
                                   px_presentation *p, cp_error *err)
{
    const dcm_dataset *item;
    double c, w;
    cp_status st;

    if (pvt != NULL && render_double(pvt, DCM_RescaleSlope, &p->slope)) {
        p->has_rescale = true;
        if (!render_double(pvt, DCM_RescaleIntercept, &p->intercept))
            p->intercept = 0;
        render_string(pvt, DCM_RescaleType, p->rescale_type, sizeof(p->rescale_type));
    }
    if (voi != NULL && render_double(voi, DCM_WindowCenter, &c) &&
        render_double(voi, DCM_WindowWidth, &w)) {
        p->has_window = true;
        p->window_center = c;
        p->window_width = w;
        p->voi_function = render_voi_function(voi);
    }

    item = render_item(ds, DCM_ModalityLUTSequence, 0);
    if (item != NULL && !p->modality_lut.present) {
        st = render_lut_read(item, src, &p->modality_lut, err);
        if (st != CP_OK)
            return st;
    }
    item = render_item(ds, DCM_VOILUTSequence, 0);
    if (item != NULL && !p->voi_lut.present) {
        st = render_lut_read(item, src, &p->voi_lut, err);
        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}

cp_status px_presentation_create(const dcm_dataset *ds, dcm_source *src, uint32_t frame_index,
                                 px_presentation **out, cp_error *err)
{
    px_presentation *p = cp_calloc(1, sizeof(*p));
    const dcm_dataset *shared, *perframe;
    char shape[RENDER_TEXT_MAX];
    cp_status st;

    *out = NULL;
    if (p == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "presentation");
    p->slope = 1;
    p->voi_function = PX_VOI_LINEAR;

    st = render_read_level(ds, ds, ds, src, p, err);
    if (st != CP_OK)
        goto fail;

    /* Enhanced multi-frame (PS3.3 C.7.6.16): shared groups, then this frame's. */
    shared = render_item(ds, DCM_SharedFunctionalGroupsSequence, 0);
    perframe = render_item(ds, DCM_PerFrameFunctionalGroupsSequence, frame_index);
    for (int level = 0; level < 2; level++) {
        const dcm_dataset *group = level == 0 ? shared : perframe;

        if (group == NULL)
            continue;
        st = render_read_level(group,
                               render_item(group, DCM_PixelValueTransformationSequence, 0),
                               render_item(group, DCM_FrameVOILUTSequence, 0), src, p, err);
        if (st != CP_OK)
            goto fail;
    }

    if (render_string(ds, DCM_PresentationLUTShape, shape, sizeof(shape)))
        p->inverse = strcmp(shape, "INVERSE") == 0;
    *out = p;
    return CP_OK;

fail:
    px_presentation_destroy(p);
    return st;
}

void px_presentation_destroy(px_presentation *pres)
{
    if (pres == NULL)
        return;
    cp_free(pres->modality_lut.data);
    cp_free(pres->voi_lut.data);
    cp_free(pres);
}

void px_picture_clear(px_picture *pic)
{
    if (pic == NULL)
        return;
    cp_free(pic->data);
    memset(pic, 0, sizeof(*pic));
}

/* ---- The grayscale pipeline, one value at a time ---- */

/* How one render maps a modality value to an output byte. */
typedef struct {
    const px_presentation *pres;
    bool is_signed;
    enum { VOI_WINDOW, VOI_LUT, VOI_RANGE } voi;
    double center, width;
    px_voi_function function;
    double range_min, range_max;
    bool invert;
} render_pipe;

/* The LUT's first input value, as the image's signedness reads the descriptor (C.11.1.1). */
static int64_t lut_first(const render_lut *lut, bool is_signed)
{
    int64_t first = lut->first;

    if (is_signed && !lut->first_is_ss && first >= 32768 && first < 65536)
        first -= 65536;
    return first;
}

static double lut_apply(const render_lut *lut, bool is_signed, double x)
{
    int64_t i = (int64_t)floor(x + 0.5) - lut_first(lut, is_signed);

    if (i < 0)
        i = 0;
    if (i >= (int64_t)lut->entries)
        i = lut->entries - 1;
    return lut->data[i];
}

static double render_modality(const render_pipe *rp, double sv)
{
    const px_presentation *p = rp->pres;

    if (p == NULL)
        return sv;
    if (p->modality_lut.present)
        return lut_apply(&p->modality_lut, rp->is_signed, sv);
    return sv * p->slope + p->intercept;
}

/* PS3.3 C.11.2.1.2 (LINEAR) and C.11.2.1.3 (LINEAR_EXACT, SIGMOID), into [0, 255]. */
static double render_window(px_voi_function fn, double c, double w, double x)
{
    const double ymin = 0, ymax = 255;

    switch (fn) {
    case PX_VOI_LINEAR_EXACT:
        if (w <= 0)
            w = 1e-9;
        if (x <= c - w / 2)
            return ymin;
        if (x > c + w / 2)
            return ymax;
        return ((x - c) / w + 0.5) * (ymax - ymin) + ymin;
    case PX_VOI_SIGMOID:
        if (w <= 0)
            w = 1e-9;
        return (ymax - ymin) / (1 + exp(-4 * (x - c) / w)) + ymin;
    case PX_VOI_LINEAR:
    default:
        if (w < 1)
            w = 1;
        if (x <= c - 0.5 - (w - 1) / 2)
            return ymin;
        if (x > c - 0.5 + (w - 1) / 2)
            return ymax;
        return ((x - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin;
    }
}

static uint8_t render_value(const render_pipe *rp, double sv)
{
    double m = render_modality(rp, sv);
    double y;
    long b;

    switch (rp->voi) {
    case VOI_WINDOW:
        y = render_window(rp->function, rp->center, rp->width, m);
        break;
    case VOI_LUT: {
        const render_lut *lut = &rp->pres->voi_lut;
        double top = (double)((UINT32_C(1) << lut->bits) - 1);

        y = lut_apply(lut, rp->is_signed, m) * 255.0 / top;
        break;
    }
    case VOI_RANGE:
    default:
        if (rp->range_max <= rp->range_min)
            y = 0;
        else
            y = (m - rp->range_min) * 255.0 / (rp->range_max - rp->range_min);
        break;
    }
    b = lround(y);
    b = b < 0 ? 0 : b > 255 ? 255 : b;
    return (uint8_t)(rp->invert ? 255 - b : b);
}

/* ---- Reading frame samples ---- */

static double frame_sample(const px_frame *f, size_t k)
{
    switch (f->type) {
    case PX_U8: return f->data[k];
    case PX_S8: return ((const int8_t *)f->data)[k];
    case PX_U16: return ((const uint16_t *)(const void *)f->data)[k];
    case PX_S16: return ((const int16_t *)(const void *)f->data)[k];
    case PX_U32: return ((const uint32_t *)(const void *)f->data)[k];
    case PX_S32: return ((const int32_t *)(const void *)f->data)[k];
    case PX_F32: return ((const float *)(const void *)f->data)[k];
    case PX_F64: return ((const double *)(const void *)f->data)[k];
    }
    return 0;
}

static bool frame_small_int(const px_frame *f)
{
    return f->type == PX_U8 || f->type == PX_S8 || f->type == PX_U16 || f->type == PX_S16;
}

/* Stored-value minimum and maximum of the frame (NaNs skipped). */
static void frame_range(const px_frame *f, double *lo, double *hi)
{
    size_t n = (size_t)f->rows * f->columns * f->samples_per_pixel;
    double a = INFINITY, b = -INFINITY;

    if (f->type == PX_U16) {
        const uint16_t *p = (const uint16_t *)(const void *)f->data;
        uint16_t mn = UINT16_MAX, mx = 0;

        for (size_t k = 0; k < n; k++) {
            mn = p[k] < mn ? p[k] : mn;
            mx = p[k] > mx ? p[k] : mx;
        }
        a = mn;
        b = mx;
    } else if (f->type == PX_S16) {
        const int16_t *p = (const int16_t *)(const void *)f->data;
        int16_t mn = INT16_MAX, mx = INT16_MIN;

        for (size_t k = 0; k < n; k++) {
            mn = p[k] < mn ? p[k] : mn;
            mx = p[k] > mx ? p[k] : mx;
        }
        a = mn;
        b = mx;
    } else {
        for (size_t k = 0; k < n; k++) {
            double v = frame_sample(f, k);

            if (v < a)
                a = v;
            if (v > b)
                b = v;
        }
    }
    *lo = n == 0 || isinf(a) ? 0 : a;
    *hi = n == 0 || isinf(b) ? 0 : b;
}

/*
 * out[k] = lut[(sample k - base) & mask], for the small integer containers.
 * Samples are masked or sign-extended to Bits Stored (pixel.h), so the mask
 * changes nothing for a valid frame and keeps any other inside the table.
 */
static void render_gray_lookup(const px_frame *f, const uint8_t *lut, int32_t base,
                               uint32_t mask, uint8_t *out)
{
    size_t n = (size_t)f->rows * f->columns;

    switch (f->type) {
    case PX_U8:
        for (size_t k = 0; k < n; k++)
            out[k] = lut[(uint32_t)(f->data[k] - base) & mask];
        break;
    case PX_S8:
        for (size_t k = 0; k < n; k++)
            out[k] = lut[(uint32_t)(((const int8_t *)f->data)[k] - base) & mask];
        break;
    case PX_U16: {
        const uint16_t *s = (const uint16_t *)(const void *)f->data;

        for (size_t k = 0; k < n; k++)
            out[k] = lut[(uint32_t)(s[k] - base) & mask];
        break;
    }
    default: {
        const int16_t *s = (const int16_t *)(const void *)f->data;

        for (size_t k = 0; k < n; k++)
            out[k] = lut[(uint32_t)(s[k] - base) & mask];
        break;
    }
    }
}

static cp_status render_gray(const px_image *img, const px_presentation *pres,
                             const px_frame *f, const px_render_params *params, uint8_t *out,
                             cp_error *err)
{
    render_pipe rp = { 0 };
    size_t n = (size_t)f->rows * f->columns;
    double lo = 0, hi = 0;
    bool is_signed = f->type == PX_S8 || f->type == PX_S16 || f->type == PX_S32;

    rp.pres = pres;
    rp.is_signed = is_signed;
    rp.invert = f->photometric == PX_MONOCHROME1 || (pres != NULL && pres->inverse);
    if (params != NULL && params->invert)
        rp.invert = !rp.invert;
    (void)img;

    if (params != NULL && params->has_window) {
        rp.voi = VOI_WINDOW;
        rp.center = params->window_center;
        rp.width = params->window_width;
        rp.function = params->voi_function;
    } else if (pres != NULL && pres->has_window) {
        rp.voi = VOI_WINDOW;
        rp.center = pres->window_center;
        rp.width = pres->window_width;
        rp.function = pres->voi_function;
    } else if (pres != NULL && pres->voi_lut.present) {
        rp.voi = VOI_LUT;
    } else {
        rp.voi = VOI_RANGE;
        frame_range(f, &lo, &hi);
    }

    if (frame_small_int(f)) {
        /* One table over every value Bits Stored allows: at most 65536 entries. */
        unsigned width = (unsigned)px_sample_size(f->type) * 8;
        unsigned bits = f->bits_stored >= 1 && f->bits_stored <= width ? f->bits_stored
                                                                       : width;
        uint32_t count = UINT32_C(1) << bits;
        int32_t base = is_signed ? -(int32_t)(count / 2) : 0;
        uint8_t *lut;

        lut = cp_malloc(count);
        if (lut == NULL)
            return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "render table");
        if (rp.voi == VOI_RANGE) {
            double a = INFINITY, b = -INFINITY;

            for (int64_t v = (int64_t)lo; v <= (int64_t)hi; v++) {
                double m = render_modality(&rp, (double)v);

                a = m < a ? m : a;
                b = m > b ? m : b;
            }
            rp.range_min = a;
            rp.range_max = b;
        }
        for (uint32_t i = 0; i < count; i++)
            lut[i] = render_value(&rp, (double)(base + (int32_t)i));
        render_gray_lookup(f, lut, base, count - 1, out);
        cp_free(lut);
        return CP_OK;
    }

    if (rp.voi == VOI_RANGE) {
        double a = render_modality(&rp, lo), b = render_modality(&rp, hi);

        rp.range_min = a < b ? a : b;
        rp.range_max = a < b ? b : a;
    }
    for (size_t k = 0; k < n; k++) {
        double v = frame_sample(f, k);

        out[k] = isnan(v) ? 0 : render_value(&rp, v);
    }
    return CP_OK;
}

/* ---- Colour ---- */

static uint8_t clamp_byte(double v)
{
    long b = lround(v);

    return (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
}

/* A colour sample scaled to 8 bits from its stored depth. */
static double colour_sample(const px_frame *f, size_t k)
{
    double v = frame_sample(f, k);
    unsigned bits = f->bits_stored;

    if (f->type == PX_U8 || bits <= 8 || bits > 32)
        return v;
    return v * 255.0 / (double)((UINT64_C(1) << bits) - 1);
}

static void render_rgb(const px_frame *f, uint8_t *out)
{
    size_t n = (size_t)f->rows * f->columns * 3;

    if (f->type == PX_U8) {
        memcpy(out, f->data, n);
        return;
    }
    for (size_t k = 0; k < n; k++)
        out[k] = clamp_byte(colour_sample(f, k));
}

/* PS3.3 C.7.6.3.1.2: YBR_FULL is full-range ITU-R BT.601; YBR_PARTIAL has Y in 16-235. */
static void render_ybr(const px_frame *f, bool partial, uint8_t *out)
{
    size_t n = (size_t)f->rows * f->columns;

    for (size_t i = 0; i < n; i++) {
        double y = colour_sample(f, 3 * i);
        double cb = colour_sample(f, 3 * i + 1) - 128;
        double cr = colour_sample(f, 3 * i + 2) - 128;

        if (partial) {
            y = (y - 16) * 255.0 / 219.0;
            cb *= 255.0 / 224.0;
            cr *= 255.0 / 224.0;
        }
        out[3 * i] = clamp_byte(y + 1.402 * cr);
        out[3 * i + 1] = clamp_byte(y - 0.344136 * cb - 0.714136 * cr);
        out[3 * i + 2] = clamp_byte(y + 1.772 * cb);
    }
}

static uint8_t palette_byte(const px_palette *pal, const uint16_t *table, size_t i)
{
    uint16_t v = table[i];

    return pal->bits > 8 ? (uint8_t)(v >> 8) : (uint8_t)v;
}

static cp_status render_palette(const px_image *img, const px_frame *f, uint8_t *out,
                                cp_error *err)
{
    const px_palette *pal = &img->palette;
    size_t n = (size_t)f->rows * f->columns;

    if (!img->has_palette || pal->entries == 0 || pal->red == NULL || pal->green == NULL ||
        pal->blue == NULL)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "PALETTE COLOR image without a palette");
    for (size_t k = 0; k < n; k++) {
        int64_t i = (int64_t)frame_sample(f, k) - pal->first_mapped;

        if (i < 0)
            i = 0;
        if (i >= (int64_t)pal->entries)
            i = pal->entries - 1;
        out[3 * k] = palette_byte(pal, pal->red, (size_t)i);
        out[3 * k + 1] = palette_byte(pal, pal->green, (size_t)i);
        out[3 * k + 2] = palette_byte(pal, pal->blue, (size_t)i);
    }
    return CP_OK;
}

/* ---- Scaling ---- */

/* How each output pixel of one axis draws on the source: taps and their weights. */
typedef struct {
    uint32_t *first;    /* first source index of output i */
    uint32_t *count;    /* number of taps of output i */
    int32_t *weight;    /* taps of output i at weight[i * max_taps] */
    uint32_t max_taps;
} render_axis;

static void axis_free(render_axis *a)
{
    cp_free(a->first);
    cp_free(a->count);
    cp_free(a->weight);
}

/* Makes the weights of output i sum to exactly 1 << RENDER_WEIGHT_BITS. */
static void axis_normalise(double *w, uint32_t n, int32_t *out)
{
    double sum = 0;
    int32_t total = 0;
    uint32_t big = 0;

    for (uint32_t t = 0; t < n; t++)
        sum += w[t];
    for (uint32_t t = 0; t < n; t++) {
        out[t] = (int32_t)lround(w[t] / sum * (1 << RENDER_WEIGHT_BITS));
        total += out[t];
        if (out[t] > out[big])
            big = t;
    }
    out[big] += (1 << RENDER_WEIGHT_BITS) - total;
}

static cp_status axis_build(uint32_t in, uint32_t out, render_axis *a, cp_error *err)
{
    double scale = (double)out / in;
    double *w;

    a->max_taps = scale < 1 ? (uint32_t)ceil(1 / scale) + 1 : 2;
    w = cp_malloc(a->max_taps * sizeof(double));
    a->first = cp_calloc(out, sizeof(uint32_t));
    a->count = cp_calloc(out, sizeof(uint32_t));
    a->weight = cp_calloc((size_t)out * a->max_taps, sizeof(int32_t));
    if (w == NULL || a->first == NULL || a->count == NULL || a->weight == NULL) {
        cp_free(w);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "scaling weights");
    }

    for (uint32_t i = 0; i < out; i++) {
        uint32_t n = 0, first;

        if (scale < 1) {
            double x0 = i / scale, x1 = (i + 1) / scale;
            uint32_t j0 = (uint32_t)floor(x0), j1 = (uint32_t)ceil(x1);

            if (j1 > in)
                j1 = in;
            first = j0;
            for (uint32_t j = j0; j < j1 && n < a->max_taps; j++) {
                double lo = j > x0 ? j : x0, hi = j + 1 < x1 ? j + 1 : x1;

                w[n++] = hi > lo ? hi - lo : 0;
            }
        } else {
            double x = (i + 0.5) / scale - 0.5;
            double f;
            int64_t j = (int64_t)floor(x);

            if (j < 0) {
                j = 0;
                f = 0;
            } else if (j >= (int64_t)in - 1) {
                j = in - 1;
                f = 0;
            } else {
                f = x - (double)j;
            }
            first = (uint32_t)j;
            w[n++] = 1 - f;
            if (f > 0)
                w[n++] = f;
        }
        a->first[i] = first;
        a->count[i] = n;
        axis_normalise(w, n, a->weight + (size_t)i * a->max_taps);
    }
    cp_free(w);
    return CP_OK;
}

/* One source row through the horizontal taps, into 16 bits with 8 fraction bits. */
static void scale_row(const uint8_t *row, uint16_t ch, const render_axis *ax, uint32_t dw,
                      uint16_t *m)
{
    if (ch == 1) {
        for (uint32_t x = 0; x < dw; x++) {
            const int32_t *w = ax->weight + (size_t)x * ax->max_taps;
            const uint8_t *s = row + ax->first[x];
            int32_t sum = 1 << 5;

            for (uint32_t t = 0; t < ax->count[x]; t++)
                sum += w[t] * s[t];
            m[x] = (uint16_t)(sum >> 6);
        }
        return;
    }
    for (uint32_t x = 0; x < dw; x++) {
        const int32_t *w = ax->weight + (size_t)x * ax->max_taps;
        const uint8_t *s = row + (size_t)ax->first[x] * 3;
        int32_t r = 1 << 5, g = 1 << 5, b = 1 << 5;

        for (uint32_t t = 0; t < ax->count[x]; t++) {
            r += w[t] * s[3 * t];
            g += w[t] * s[3 * t + 1];
            b += w[t] * s[3 * t + 2];
        }
        m[3 * x] = (uint16_t)(r >> 6);
        m[3 * x + 1] = (uint16_t)(g >> 6);
        m[3 * x + 2] = (uint16_t)(b >> 6);
    }
}

/*
 * Scales src (sw x sh, ch channels) into dst (dw x dh): rows first into a
 * 16-bit intermediate with 8 fraction bits, then columns.
 */
static cp_status render_scale(const uint8_t *src, uint32_t sw, uint32_t sh, uint16_t ch,
                              uint8_t *dst, uint32_t dw, uint32_t dh, cp_error *err)
{
    render_axis ax = { 0 }, ay = { 0 };
    uint16_t *mid = NULL;
    int32_t *acc = NULL;
    size_t mstride = (size_t)dw * ch;
    cp_status st;

    st = axis_build(sw, dw, &ax, err);
    if (st == CP_OK)
        st = axis_build(sh, dh, &ay, err);
    if (st != CP_OK)
        goto done;
    mid = cp_malloc((size_t)sh * mstride * sizeof(uint16_t));
    acc = cp_malloc(mstride * sizeof(int32_t));
    if (mid == NULL || acc == NULL) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "scaling buffer");
        goto done;
    }

    for (uint32_t y = 0; y < sh; y++)
        scale_row(src + (size_t)y * sw * ch, ch, &ax, dw, mid + (size_t)y * mstride);

    for (uint32_t y = 0; y < dh; y++) {
        const int32_t *w = ay.weight + (size_t)y * ay.max_taps;
        const uint16_t *m0 = mid + (size_t)ay.first[y] * mstride;
        uint8_t *d = dst + (size_t)y * mstride;

        for (size_t k = 0; k < mstride; k++)
            acc[k] = 1 << 21;
        for (uint32_t t = 0; t < ay.count[y]; t++) {
            const uint16_t *m = m0 + (size_t)t * mstride;
            int32_t wt = w[t];

            for (size_t k = 0; k < mstride; k++)
                acc[k] += wt * m[k];
        }
        for (size_t k = 0; k < mstride; k++) {
            int32_t v = acc[k] >> 22;

            d[k] = (uint8_t)(v > 255 ? 255 : v);
        }
    }

done:
    cp_free(acc);
    cp_free(mid);
    axis_free(&ax);
    axis_free(&ay);
    return st;
}

/* The output size: the frame fitted within the viewport, keeping the aspect ratio. */
static void render_fit(uint32_t cols, uint32_t rows, const px_render_params *params,
                       uint32_t *w, uint32_t *h)
{
    uint32_t vw = params == NULL ? 0 : params->viewport_width;
    uint32_t vh = params == NULL ? 0 : params->viewport_height;
    double s;

    *w = cols;
    *h = rows;
    if (vw == 0 && vh == 0)
        return;
    if (vw == 0)
        s = (double)vh / rows;
    else if (vh == 0)
        s = (double)vw / cols;
    else
        s = fmin((double)vw / cols, (double)vh / rows);
    *w = (uint32_t)lround(cols * s);
    *h = (uint32_t)lround(rows * s);
    *w = *w < 1 ? 1 : vw != 0 && *w > vw ? vw : *w;
    *h = *h < 1 ? 1 : vh != 0 && *h > vh ? vh : *h;
}

cp_status px_render(const px_image *img, const px_presentation *pres, const px_frame *frame,
                    const px_render_params *params, px_picture *pic, cp_error *err)
{
    uint16_t ch;
    uint8_t *full = NULL;
    uint32_t w, h;
    size_t n;
    cp_status st = CP_OK;

    memset(pic, 0, sizeof(*pic));
    if (frame == NULL || frame->data == NULL || frame->rows == 0 || frame->columns == 0 ||
        (frame->samples_per_pixel != 1 && frame->samples_per_pixel != 3) ||
        frame->size < (size_t)frame->rows * frame->columns * frame->samples_per_pixel *
                           px_sample_size(frame->type))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "frame to render is empty or has %u samples",
                            frame == NULL ? 0 : frame->samples_per_pixel);

    ch = frame->samples_per_pixel == 1 && frame->photometric != PX_PALETTE_COLOR ? 1 : 3;
    n = (size_t)frame->rows * frame->columns;
    full = cp_malloc(n * ch);
    if (full == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "picture of %zu pixels", n);

    if (frame->photometric == PX_PALETTE_COLOR && frame->samples_per_pixel == 1)
        st = render_palette(img, frame, full, err);
    else if (ch == 1)
        st = render_gray(img, pres, frame, params, full, err);
    else if (frame->photometric == PX_YBR_FULL || frame->photometric == PX_YBR_FULL_422)
        render_ybr(frame, false, full);
    else if (frame->photometric == PX_YBR_PARTIAL_422 ||
             frame->photometric == PX_YBR_PARTIAL_420)
        render_ybr(frame, true, full);
    else
        render_rgb(frame, full);
    if (st != CP_OK)
        goto fail;
    if (ch == 3 && params != NULL && params->invert)
        for (size_t k = 0; k < n * 3; k++)
            full[k] = (uint8_t)(255 - full[k]);

    render_fit(frame->columns, frame->rows, params, &w, &h);
    pic->channels = ch;
    if (w == frame->columns && h == frame->rows) {
        pic->width = w;
        pic->height = h;
        pic->data = full;
        return CP_OK;
    }
    pic->data = cp_malloc((size_t)w * h * ch);
    if (pic->data == NULL) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "picture of %ux%u", w, h);
        goto fail;
    }
    st = render_scale(full, frame->columns, frame->rows, ch, pic->data, w, h, err);
    if (st != CP_OK)
        goto fail;
    pic->width = w;
    pic->height = h;
    cp_free(full);
    return CP_OK;

fail:
    cp_free(full);
    px_picture_clear(pic);
    return st;
}
