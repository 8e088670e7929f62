// Fails, naming the command that fixes it, when the committed types are not what
// api/openapi.json generates now.
import { readFileSync } from "node:fs";
const [committed, fresh] = process.argv.slice(2);
if (readFileSync(committed, "utf8") !== readFileSync(fresh, "utf8")) {
  console.error(`${committed} is not what api/openapi.json generates: run \`npm run generate\` and commit it`);
  process.exit(1);
}
