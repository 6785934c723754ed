// dicomweb-client (the DICOMweb library OHIF and Slim use) against a running
// `cloudpacs serve`: store an instance, search for its study, read its
// series metadata and the instance back. Run by test_dicomweb.py:
//   node dicomweb_client_test.js BASE_URL FILE STUDY_UID SERIES_UID SOP_UID PATIENT_ID
'use strict';

const fs = require('fs');
global.XMLHttpRequest = require('xhr2');
const { api } = require('dicomweb-client');

function check(cond, what) {
  if (!cond) {
    throw new Error('check failed: ' + what);
  }
}

async function main() {
  const [base, file, study, series, sop, patientId] = process.argv.slice(2);
  // DICOMWEB_TOKEN: the bearer token cloudpacs wants (its service token).
  const token = process.env.DICOMWEB_TOKEN;
  const client = new api.DICOMwebClient({
    url: base,
    headers: token ? { Authorization: 'Bearer ' + token } : {},
  });
  const bytes = fs.readFileSync(file);
  const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);

  await client.storeInstances({ datasets: [new Uint8Array(data)] });

  const studies = await client.searchForStudies({ queryParams: { PatientID: patientId } });
  check(studies.some((s) => s['0020000D'].Value[0] === study), 'study found');

  const instances = await client.searchForInstances({
    studyInstanceUID: study, queryParams: { limit: 10 },
  });
  check(instances.some((i) => i['00080018'].Value[0] === sop), 'instance found');

  const meta = await client.retrieveSeriesMetadata({
    studyInstanceUID: study, seriesInstanceUID: series,
  });
  check(meta.some((m) => m['00080018'].Value[0] === sop), 'metadata of the instance');

  const got = await client.retrieveInstance({
    studyInstanceUID: study, seriesInstanceUID: series, sopInstanceUID: sop,
  });
  check(Buffer.from(got).equals(bytes), 'retrieved bytes equal the stored file');
  console.log(JSON.stringify({ ok: true, studies: studies.length, metadata: meta.length }));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
