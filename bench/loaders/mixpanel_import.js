// The mixpanel-import npm package, pointed at a local Mixpanel-compatible server.
//
//   node bench/loaders/mixpanel_import.js <node_modules folder> <api url> <token> <events.ndjson>
//
// Its endpoints are fixed to Mixpanel's hosts (Job.endpoints, and undici connection pools made
// when it loads), so the benchmark replaces the Job's `url` getter and points pools made for
// Mixpanel's hosts at the local server; everything else runs as the package ships it, with its
// default options (10 workers, batches of 2,000) plus gzip and strict mode, as this project's
// target sends.
const path = require("path");
const [modules, apiUrl, token, file] = process.argv.slice(2);
const undici = require(path.join(modules, "undici"));
const ShippedPool = undici.Pool;
undici.Pool = class extends ShippedPool {
  constructor(origin, options) {
    super(String(origin).includes("mixpanel.com") ? apiUrl : origin, options);
  }
};
const mpImport = require(path.join(modules, "mixpanel-import"));
const Job = require(path.join(modules, "mixpanel-import", "components", "job.js"));
Object.defineProperty(Job.prototype, "url", { get: () => `${apiUrl}/import` });

mpImport({ token }, file, {
  recordType: "event", streamFormat: "jsonl", compress: true, strict: true,
  verbose: false, logs: false, fixData: false, showProgress: false,
}).then((summary) => {
  console.error(JSON.stringify({ success: summary.success, failed: summary.failed,
                                 retries: summary.retries, rateLimit: summary.rateLimit }));
}).catch((error) => {
  console.error(error);
  process.exit(1);
});
