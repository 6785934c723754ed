// dimse_client_test.js - dcmjs-dimse, an independent DICOM network client
// written in JavaScript, against `cloudpacs serve`: C-ECHO (PS3.7 9.1.5),
// C-STORE (9.1.1) of the files given, then a study-level C-FIND (9.1.2,
// Study Root) for each stored study. Run by test_dcmjs_dimse.py:
//
//   node dimse_client_test.js HOST PORT CALLED_AE STUDY_UID[,STUDY_UID...] FILE...
//
// Prints one line on stdout, "RESULT " and a JSON object: the statuses seen
// and the studies found; the Python test decides what is right.

'use strict';

const dcmjsDimse = require('dcmjs-dimse');

const { Client } = dcmjsDimse;
const { CEchoRequest, CStoreRequest, CFindRequest } = dcmjsDimse.requests;
const { Status } = dcmjsDimse.constants;

const CALLING_AE = 'DCMJS_DIMSE';

// The library logs every PDU at info level; warnings and errors are enough.
dcmjsDimse.log.setLevel('warn');

// Sends the requests on one association; resolves with what happened.
function associate(host, port, calledAe, requests) {
  return new Promise((resolve) => {
    const client = new Client();
    const outcome = { accepted: false, rejected: false, error: null };

    client.on('associationAccepted', () => { outcome.accepted = true; });
    client.on('associationRejected', (result) => {
      outcome.rejected = true;
      outcome.error = 'rejected: ' + JSON.stringify(result);
    });
    client.on('networkError', (e) => { outcome.error = String(e); });
    client.on('closed', () => resolve(outcome));
    requests.forEach((r) => client.addRequest(r));
    client.send(host, port, CALLING_AE, calledAe, { connectTimeout: 10000,
      associationTimeout: 20000, pduTimeout: 20000 });
  });
}

async function echo(host, port, calledAe) {
  const statuses = [];
  const request = new CEchoRequest();

  request.on('response', (rsp) => statuses.push(rsp.getStatus()));
  const outcome = await associate(host, port, calledAe, [request]);
  return { outcome, statuses };
}

async function store(host, port, calledAe, files) {
  const statuses = {};
  const requests = files.map((file) => {
    const request = new CStoreRequest(file);

    request.on('response', (rsp) => { statuses[file] = rsp.getStatus(); });
    return request;
  });
  const outcome = await associate(host, port, calledAe, requests);
  return { outcome, statuses };
}

async function findStudies(host, port, calledAe, studyUids) {
  const found = {};
  const requests = studyUids.map((uid) => {
    const request = CFindRequest.createStudyFindRequest({ StudyInstanceUID: uid,
      NumberOfStudyRelatedInstances: '' });

    found[uid] = { final: null, matches: [] };
    request.on('response', (rsp) => {
      const status = rsp.getStatus();

      if (status === Status.Pending && rsp.hasDataset()) {
        const ds = rsp.getDataset();
        found[uid].matches.push({
          StudyInstanceUID: ds.getElement('StudyInstanceUID'),
          PatientID: ds.getElement('PatientID'),
          NumberOfStudyRelatedInstances: ds.getElement('NumberOfStudyRelatedInstances'),
        });
      } else if (status !== Status.Pending) {
        found[uid].final = status;
      }
    });
    return request;
  });
  const outcome = await associate(host, port, calledAe, requests);
  return { outcome, found };
}

async function main() {
  const [host, portText, calledAe, studyList, ...files] = process.argv.slice(2);
  const port = Number(portText);
  const studyUids = studyList.split(',');

  const result = {
    success: Status.Success,
    pending: Status.Pending,
    echo: await echo(host, port, calledAe),
    store: await store(host, port, calledAe, files),
  };
  result.find = await findStudies(host, port, calledAe, studyUids);
  process.stdout.write('RESULT ' + JSON.stringify(result) + '\n');
}

main().catch((e) => {
  process.stderr.write('dimse_client_test: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
