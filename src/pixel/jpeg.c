/*
 * jpeg.c - JPEG Baseline (Process 1) and Extended (Process 2 & 4) frames,
 * PS3.5 A.4.1 and 8.2.1, decoded through libjpeg-turbo's TurboJPEG API.
 *
 * Colour follows what DCMTK's dcmdjpeg does by default ("convert if the
 * photometric interpretation is YCbCr"): when the data set says YBR_FULL or
 * YBR_FULL_422 the JPEG's components are YCbCr and TurboJPEG converts them
 * to RGB (the frame then says PX_RGB); when it says RGB the components are
 * taken as they are, without any colour transform, whatever JFIF or Adobe
 * markers the stream carries, because the data set is what the standard
 * makes authoritative (PS3.5 8.2.1). (pydicom with Pillow converts such
 * streams when they carry a JFIF marker; dcmdjpeg does not.)
 *
 * libjpeg-turbo 2.1 (Debian 12) is built for 8-bit samples only, so 12-bit
 * Extended frames fail with CP_ERR_UNSUPPORTED.
 */
#include <string.h>
#include <turbojpeg.h>

#include "core/alloc.h"
#include "pixel/codec.h"

/* A pre-scan bounded by len: the sample precision and component count of the SOF. */
static bool jpeg_find_sof(const uint8_t *p, size_t len, int *precision, int *components)
{
    size_t i = 2;

    if (len < 4 || p[0] != 0xFF || p[1] != 0xD8)
        return false;
    while (i + 4 <= len) {
        uint8_t marker;
        size_t seglen;

        if (p[i] != 0xFF)
            return false;
        marker = p[i + 1];
        if (marker == 0xFF) {
            i++;
            continue;
        }
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
            i += 2;
            continue;
        }
        seglen = (size_t)p[i + 2] << 8 | p[i + 3];
        if (seglen < 2)
            return false;
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 &&
            marker != 0xCC) {
            if (i + 10 > len)
                return false;
            *precision = p[i + 4];
            *components = p[i + 9];
            return true;
        }
        if (marker == 0xDA)
            return false;
        i += 2 + seglen;
    }
    return false;
}

/* The offset just past the entropy-coded data that starts at i: the next marker. */
static size_t jpeg_skip_entropy(const uint8_t *p, size_t len, size_t i)
{
    while (i + 1 < len) {
        if (p[i] == 0xFF && p[i + 1] != 0x00 && !(p[i + 1] >= 0xD0 && p[i + 1] <= 0xD7))
            return i;
        i++;
    }
    return len;
}

/*
 * Rewrites a copy of the stream so that libjpeg reads its components as
 * RGB and applies no colour transform, the way dcmdjpeg treats a data set
 * that says RGB: the JFIF identifier is spoilt, an Adobe transform flag
 * becomes 0 (none), and the component identifiers of the frame and scan
 * headers become 'R', 'G', 'B', which libjpeg takes for RGB. Upsampling of
 * subsampled components is left to libjpeg.
 */
static void jpeg_force_rgb(uint8_t *p, size_t len)
{
    static const uint8_t rgb[3] = { 'R', 'G', 'B' };
    uint8_t ids[3] = { 1, 2, 3 };
    size_t i = 2;

    while (i + 4 <= len) {
        uint8_t marker = p[i + 1];
        size_t seglen, body = i + 4;

        if (p[i] != 0xFF)
            return;
        if (marker == 0xFF) {
            i++;
            continue;
        }
        if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
            i += 2;
            continue;
        }
        if (marker == 0xD9)
            return;
        seglen = (size_t)p[i + 2] << 8 | p[i + 3];
        if (seglen < 2 || i + 2 + seglen > len)
            return;
        if (marker == 0xE0 && seglen >= 7 && memcmp(p + body, "JFIF", 5) == 0)
            p[body] = 'X';
        if (marker == 0xEE && seglen >= 14 && memcmp(p + body, "Adobe", 5) == 0)
            p[body + 11] = 0;
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 &&
            marker != 0xCC && seglen >= 8 + 9 && p[body + 5] == 3) {
            for (int c = 0; c < 3; c++) {
                ids[c] = p[body + 6 + 3 * c];
                p[body + 6 + 3 * c] = rgb[c];
            }
        }
        if (marker == 0xDA) {
            size_t ns = seglen >= 3 ? p[body] : 0;

            for (size_t k = 0; k < ns && 2 + 1 + 2 * k < seglen; k++) {
                uint8_t *sel = p + body + 1 + 2 * k;

                for (int c = 0; c < 3; c++) {
                    if (*sel == ids[c]) {
                        *sel = rgb[c];
                        break;
                    }
                }
            }
            i = jpeg_skip_entropy(p, len, i + 2 + seglen);
            continue;
        }
        i += 2 + seglen;
    }
}

cp_status px_jpeg_decode(const px_image *img, const uint8_t *bytes, size_t len, px_frame *frame,
                         cp_error *err)
{
    tjhandle tj = NULL;
    int width, height, subsamp, colorspace;
    int precision = 0, components = 0;
    uint8_t *rgb = NULL;
    int format;
    cp_status st;

    memset(frame, 0, sizeof(*frame));
    if (len > (size_t)UINT32_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG frame of %zu bytes", len);
    if (!jpeg_find_sof(bytes, len, &precision, &components))
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG: no SOI or frame header");
    if (precision != 8)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG %d-bit: libjpeg-turbo 2.1 decodes 8-bit samples only",
                            precision);
    if (components != img->samples_per_pixel || (components != 1 && components != 3))
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG has %d components, the image %u samples", components,
                            img->samples_per_pixel);

    tj = tjInitDecompress();
    if (tj == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "TurboJPEG decompressor");

    if (tjDecompressHeader3(tj, bytes, (unsigned long)len, &width, &height, &subsamp,
                            &colorspace) != 0) {
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG header: %s", tjGetErrorStr2(tj));
        goto done;
    }
    if ((uint32_t)width != img->columns || (uint32_t)height != img->rows) {
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG is %dx%d, the image %ux%u", width, height, img->columns,
                          img->rows);
        goto done;
    }

    st = px_frame_alloc(frame, (uint32_t)height, (uint32_t)width, (uint16_t)components, PX_U8,
                        err);
    if (st != CP_OK)
        goto done;
    frame->bits_stored = 8;
    frame->photometric = img->photometric;

    if (components == 1) {
        format = TJPF_GRAY;
    } else {
        format = TJPF_RGB;
        frame->photometric = PX_RGB;
        if (img->photometric == PX_RGB) {
            rgb = cp_malloc(len);
            if (rgb == NULL) {
                st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                  "JPEG copy");
                goto done;
            }
            memcpy(rgb, bytes, len);
            jpeg_force_rgb(rgb, len);
            bytes = rgb;
        }
    }

    if (tjDecompress2(tj, bytes, (unsigned long)len, frame->data, width, 0, height, format,
                      TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0)
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG: %s", tjGetErrorStr2(tj));

done:
    if (st != CP_OK)
        px_frame_clear(frame);
    cp_free(rgb);
    tjDestroy(tj);
    return st;
}
