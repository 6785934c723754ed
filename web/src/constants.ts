// Lists the forms offer: DICOM modality codes (PS3.3 C.7.3.1.1.1) and body
// part values (PS3.16 CID 4031, the common ones); "*" matches everything in
// a qualification. The API takes other values too: these are suggestions.
export const MODALITIES = [
  'CR', 'DX', 'CT', 'MR', 'US', 'MG', 'NM', 'PT', 'XA', 'RF', 'ES', 'OT',
];

export const BODY_PARTS = [
  'CHEST', 'HEAD', 'BRAIN', 'NECK', 'ABDOMEN', 'PELVIS', 'SPINE', 'CSPINE', 'TSPINE',
  'LSPINE', 'EXTREMITY', 'BREAST', 'HEART', 'KNEE', 'HAND', 'FOOT', 'SHOULDER',
];

// "CT, mr ,," as ["CT", "MR"].
export function splitList(text: string): string[] {
  return text.split(/[,\s;，、]+/).map((s) => s.trim().toUpperCase()).filter((s) => s !== '');
}

// "2026-12-03" (a date input) as "20261203", and back.
export function toApiDate(value: string): string {
  return value.replace(/-/g, '');
}

export function fromApiDate(value: string): string {
  return /^\d{8}$/.test(value)
    ? `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6, 8)}` : '';
}
