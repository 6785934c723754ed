/*
 * ts.c - the transfer syntaxes of PS3.5 Annex A and PS3.6 Table A-1.
 */
#include "dicom/ts.h"

#include <string.h>

#define TS(uid, name, explicit_vr, big_endian, deflated, encapsulated, lossy, retired) \
    { uid, name, explicit_vr, big_endian, deflated, encapsulated, lossy, retired }

const dcm_transfer_syntax dcm_ts_implicit_le =
    TS("1.2.840.10008.1.2", "Implicit VR Little Endian", 0, 0, 0, 0, 0, 0);
const dcm_transfer_syntax dcm_ts_explicit_le =
    TS("1.2.840.10008.1.2.1", "Explicit VR Little Endian", 1, 0, 0, 0, 0, 0);
const dcm_transfer_syntax dcm_ts_deflated_le =
    TS("1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", 1, 0, 1, 0, 0, 0);
const dcm_transfer_syntax dcm_ts_explicit_be =
    TS("1.2.840.10008.1.2.2", "Explicit VR Big Endian", 1, 1, 0, 0, 0, 1);

/* Every encapsulated syntax is explicit VR little endian outside the pixel data. */
#define ENC(uid, name, lossy, retired) TS(uid, name, 1, 0, 0, 1, lossy, retired)

static const dcm_transfer_syntax ts_encapsulated[] = {
    ENC("1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian", 0, 0),
    ENC("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", 1, 0),
    ENC("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)", 1, 0),
    ENC("1.2.840.10008.1.2.4.52", "JPEG Extended (Process 3 & 5)", 1, 1),
    ENC("1.2.840.10008.1.2.4.53",
        "JPEG Spectral Selection, Non-Hierarchical (Process 6 & 8)", 1, 1),
    ENC("1.2.840.10008.1.2.4.54",
        "JPEG Spectral Selection, Non-Hierarchical (Process 7 & 9)", 1, 1),
    ENC("1.2.840.10008.1.2.4.55",
        "JPEG Full Progression, Non-Hierarchical (Process 10 & 12)", 1, 1),
    ENC("1.2.840.10008.1.2.4.56",
        "JPEG Full Progression, Non-Hierarchical (Process 11 & 13)", 1, 1),
    ENC("1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)", 0, 0),
    ENC("1.2.840.10008.1.2.4.58", "JPEG Lossless, Non-Hierarchical (Process 15)", 0, 1),
    ENC("1.2.840.10008.1.2.4.70",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
        0, 0),
    ENC("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression", 0, 0),
    ENC("1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless) Image Compression", 1, 0),
    ENC("1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)", 0, 0),
    ENC("1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression", 1, 0),
    ENC("1.2.840.10008.1.2.4.92",
        "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)", 0, 0),
    ENC("1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component Image Compression", 1, 0),
    ENC("1.2.840.10008.1.2.4.94", "JPIP Referenced", 1, 0),
    ENC("1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", 1, 0),
    ENC("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", 1, 0),
    ENC("1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", 1, 0),
    ENC("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", 1, 0),
    ENC("1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", 1, 0),
    ENC("1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", 1, 0),
    ENC("1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", 1, 0),
    ENC("1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", 1, 0),
    ENC("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1", 1, 0),
    ENC("1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1", 1, 0),
    ENC("1.2.840.10008.1.2.4.110", "JPEG XL Lossless", 0, 0),
    ENC("1.2.840.10008.1.2.4.111", "JPEG XL JPEG Recompression", 0, 0),
    ENC("1.2.840.10008.1.2.4.112", "JPEG XL", 1, 0),
    ENC("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)",
        0, 0),
    ENC("1.2.840.10008.1.2.4.202",
        "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)", 0, 0),
    ENC("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression", 1, 0),
    ENC("1.2.840.10008.1.2.4.204", "JPIP HTJ2K Referenced", 1, 0),
    ENC("1.2.840.10008.1.2.4.205", "JPIP HTJ2K Referenced Deflate", 1, 0),
    ENC("1.2.840.10008.1.2.5", "RLE Lossless", 0, 0),
    ENC("1.2.840.10008.1.2.7.1", "SMPTE ST 2110-20 Uncompressed Progressive Active Video", 0, 0),
    ENC("1.2.840.10008.1.2.7.2", "SMPTE ST 2110-20 Uncompressed Interlaced Active Video", 0, 0),
    ENC("1.2.840.10008.1.2.7.3", "SMPTE ST 2110-30 PCM Digital Audio", 0, 0),
    ENC("1.2.840.10008.1.2.8.1", "Deflated Image Frame Compression", 0, 0),
};

#define TS_ENCAPSULATED_COUNT (sizeof ts_encapsulated / sizeof ts_encapsulated[0])

static const dcm_transfer_syntax *const ts_native[] = {
    &dcm_ts_implicit_le, &dcm_ts_explicit_le, &dcm_ts_deflated_le, &dcm_ts_explicit_be,
};

#define TS_NATIVE_COUNT (sizeof ts_native / sizeof ts_native[0])

size_t dcm_ts_count(void)
{
    return TS_NATIVE_COUNT + TS_ENCAPSULATED_COUNT;
}

const dcm_transfer_syntax *dcm_ts_at(size_t i)
{
    if (i < TS_NATIVE_COUNT)
        return ts_native[i];
    i -= TS_NATIVE_COUNT;
    return i < TS_ENCAPSULATED_COUNT ? &ts_encapsulated[i] : NULL;
}

const dcm_transfer_syntax *dcm_ts_lookup(const char *uid, size_t len)
{
    while (len > 0 && (uid[len - 1] == '\0' || uid[len - 1] == ' '))
        len--;

    for (size_t i = 0; i < dcm_ts_count(); i++) {
        const dcm_transfer_syntax *ts = dcm_ts_at(i);

        if (strlen(ts->uid) == len && memcmp(ts->uid, uid, len) == 0)
            return ts;
    }
    return NULL;
}
