// tedious (Microsoft's Node.js TDS driver) client for lab scenarios.
// Usage: node client.js '{"server":"198.51.100.20","port":1433,"password":"…","encrypt":true,
//                          "mode":"query"|"timeout","sql":"…","requestTimeout":2000,
//                          "caFile":"/…/ca.pem","maxVersion":"TLSv1.2"}'
// Exit 0 when the mode's expected outcome happened. Never prints the password.
'use strict';
const { Connection, Request } = require('tedious');

const o = JSON.parse(process.argv[2] || '{}');
const config = {
  server: o.server,
  authentication: { type: 'default', options: { userName: o.user || 'labuser', password: o.password } },
  options: {
    port: o.port || 1433,
    database: o.database || 'master',
    encrypt: o.encrypt === undefined ? true : o.encrypt,
    // The lab certificate is self-signed; validation failures are a separate scenario.
    trustServerCertificate: o.trustServerCertificate === undefined ? true : o.trustServerCertificate,
    connectTimeout: o.connectTimeout || 10000,
    requestTimeout: o.requestTimeout || 15000,
    cancelTimeout: 5000,
  },
};
// caFile: trust the lab CA (certificate scenarios); maxVersion: cap the client's TLS version.
const creds = {};
if (o.caFile) creds.ca = [require('fs').readFileSync(o.caFile)];
if (o.maxVersion) creds.maxVersion = o.maxVersion;
if (Object.keys(creds).length) config.options.cryptoCredentialsDetails = creds;
const conn = new Connection(config);
const hardStop = setTimeout(() => { console.log('hard stop'); process.exit(4); }, o.hardStopMs || 40000);

conn.on('connect', (err) => {
  if (err) { console.log('connect failed: ' + err.message); process.exit(2); }
  console.log('logged in');
  if (o.idleMs) {
    // Stay idle (tedious enables TCP keep-alive with a 30 s initial delay) before the query.
    setTimeout(() => runQuery(), o.idleMs);
  } else {
    runQuery();
  }
});

function runQuery() {
  let rows = 0;
  const req = new Request(o.sql || 'select id, name from lab_rows', (err2, rowCount) => {
    if (err2) {
      console.log('query failed: ' + err2.code + ' ' + err2.message);
      conn.close();
      clearTimeout(hardStop);
      process.exitCode = o.mode === 'timeout' && err2.code === 'ETIMEOUT' ? 0 : 3;
      return;
    }
    console.log('rows: ' + rows + ' (rowCount ' + rowCount + ')');
    conn.close();
    clearTimeout(hardStop);
    process.exitCode = o.mode === 'timeout' ? 3 : 0;
  });
  req.on('row', () => { rows += 1; });
  if (o.batch) conn.execSqlBatch(req); else conn.execSql(req);
}
conn.on('error', (e) => { console.log('connection error: ' + e.message); });
conn.on('rerouting', () => { console.log('rerouting'); });
conn.connect();
