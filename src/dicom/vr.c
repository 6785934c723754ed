/*
 * vr.c - properties of the Value Representations (PS3.5 table 6.2-1).
 */
#include "dicom/vr.h"

enum {
    VR_LONG = 1 << 0,       /* 32-bit length in explicit VR */
    VR_STRING = 1 << 1,
    VR_CHARSET = 1 << 2,    /* follows Specific Character Set */
    VR_MULTI = 1 << 3,      /* string VR that may be multi-valued */
    VR_BULK = 1 << 4,
    VR_PAD_NUL = 1 << 5,
};

typedef struct {
    char name[3];
    uint8_t flags;
    uint8_t swap;           /* byte-swap unit */
    uint8_t numeric;        /* size of one numeric value */
} vr_info;

static const vr_info vr_table[DCM_VR_COUNT] = {
    [DCM_VR_NONE] = { "??", 0, 1, 0 },
    [DCM_VR_AE] = { "AE", VR_STRING | VR_MULTI, 1, 0 },
    [DCM_VR_AS] = { "AS", VR_STRING | VR_MULTI, 1, 0 },
    [DCM_VR_AT] = { "AT", 0, 2, 4 },
    [DCM_VR_CS] = { "CS", VR_STRING | VR_MULTI, 1, 0 },
    [DCM_VR_DA] = { "DA", VR_STRING | VR_MULTI, 1, 0 },
    [DCM_VR_DS] = { "DS", VR_STRING | VR_MULTI, 1, 0 },
    [DCM_VR_DT] = { "DT", VR_STRING | VR_MULTI, 1, 0 },
    [DCM_VR_FD] = { "FD", 0, 8, 8 },
    [DCM_VR_FL] = { "FL", 0, 4, 4 },
    [DCM_VR_IS] = { "IS", VR_STRING | VR_MULTI, 1, 0 },
    [DCM_VR_LO] = { "LO", VR_STRING | VR_CHARSET | VR_MULTI, 1, 0 },
    [DCM_VR_LT] = { "LT", VR_STRING | VR_CHARSET, 1, 0 },
    [DCM_VR_OB] = { "OB", VR_LONG | VR_BULK | VR_PAD_NUL, 1, 0 },
    [DCM_VR_OD] = { "OD", VR_LONG | VR_BULK, 8, 0 },
    [DCM_VR_OF] = { "OF", VR_LONG | VR_BULK, 4, 0 },
    [DCM_VR_OL] = { "OL", VR_LONG | VR_BULK, 4, 0 },
    [DCM_VR_OV] = { "OV", VR_LONG | VR_BULK, 8, 0 },
    [DCM_VR_OW] = { "OW", VR_LONG | VR_BULK, 2, 0 },
    [DCM_VR_PN] = { "PN", VR_STRING | VR_CHARSET | VR_MULTI, 1, 0 },
    [DCM_VR_SH] = { "SH", VR_STRING | VR_CHARSET | VR_MULTI, 1, 0 },
    [DCM_VR_SL] = { "SL", 0, 4, 4 },
    [DCM_VR_SQ] = { "SQ", VR_LONG, 1, 0 },
    [DCM_VR_SS] = { "SS", 0, 2, 2 },
    [DCM_VR_ST] = { "ST", VR_STRING | VR_CHARSET, 1, 0 },
    [DCM_VR_SV] = { "SV", VR_LONG, 8, 8 },
    [DCM_VR_TM] = { "TM", VR_STRING | VR_MULTI, 1, 0 },
    [DCM_VR_UC] = { "UC", VR_LONG | VR_STRING | VR_CHARSET | VR_MULTI, 1, 0 },
    [DCM_VR_UI] = { "UI", VR_STRING | VR_MULTI | VR_PAD_NUL, 1, 0 },
    [DCM_VR_UL] = { "UL", 0, 4, 4 },
    [DCM_VR_UN] = { "UN", VR_LONG | VR_BULK | VR_PAD_NUL, 1, 0 },
    [DCM_VR_UR] = { "UR", VR_LONG | VR_STRING, 1, 0 },
    [DCM_VR_US] = { "US", 0, 2, 2 },
    [DCM_VR_UT] = { "UT", VR_LONG | VR_STRING | VR_CHARSET, 1, 0 },
    [DCM_VR_UV] = { "UV", VR_LONG, 8, 8 },
};

/* Both bytes are upper-case letters, so a 26 x 26 table maps them directly. */
static dcm_vr vr_by_letters[26][26];
static int vr_by_letters_ready;

static void vr_build_index(void)
{
    for (int vr = DCM_VR_NONE + 1; vr < DCM_VR_COUNT; vr++)
        vr_by_letters[vr_table[vr].name[0] - 'A'][vr_table[vr].name[1] - 'A'] = (dcm_vr)vr;
    vr_by_letters_ready = 1;
}

dcm_vr dcm_vr_from_bytes(uint8_t c0, uint8_t c1)
{
    /*
     * The table is rebuilt identically by any thread that sees it unbuilt,
     * so a race only repeats the same writes; C11 atomics would add nothing
     * but cost to the hottest path of the reader.
     */
    if (!__atomic_load_n(&vr_by_letters_ready, __ATOMIC_ACQUIRE)) {
        vr_build_index();
        __atomic_store_n(&vr_by_letters_ready, 1, __ATOMIC_RELEASE);
    }
    if (c0 < 'A' || c0 > 'Z' || c1 < 'A' || c1 > 'Z')
        return DCM_VR_NONE;
    return vr_by_letters[c0 - 'A'][c1 - 'A'];
}

static const vr_info *vr_get(dcm_vr vr)
{
    if ((unsigned)vr >= DCM_VR_COUNT)
        return &vr_table[DCM_VR_NONE];
    return &vr_table[vr];
}

const char *dcm_vr_name(dcm_vr vr)
{
    return vr_get(vr)->name;
}

bool dcm_vr_has_long_length(dcm_vr vr)
{
    return (vr_get(vr)->flags & VR_LONG) != 0;
}

size_t dcm_vr_swap_unit(dcm_vr vr)
{
    return vr_get(vr)->swap;
}

uint8_t dcm_vr_padding(dcm_vr vr)
{
    return (vr_get(vr)->flags & (VR_PAD_NUL | VR_STRING)) == VR_STRING ? ' ' : '\0';
}

bool dcm_vr_is_string(dcm_vr vr)
{
    return (vr_get(vr)->flags & VR_STRING) != 0;
}

bool dcm_vr_uses_charset(dcm_vr vr)
{
    return (vr_get(vr)->flags & VR_CHARSET) != 0;
}

bool dcm_vr_is_multi_valued_string(dcm_vr vr)
{
    return (vr_get(vr)->flags & VR_MULTI) != 0;
}

bool dcm_vr_is_bulk(dcm_vr vr)
{
    return (vr_get(vr)->flags & VR_BULK) != 0;
}

size_t dcm_vr_numeric_size(dcm_vr vr)
{
    return vr_get(vr)->numeric;
}
