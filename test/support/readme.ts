import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const readmePath = fileURLToPath(new URL("../../README.md", import.meta.url));

/** The address every README example is written for. */
export const readmeAddress = "127.0.0.1:8080";

/**
 * The one fenced code block of the README in `language` that contains
 * `marker`, so that tests run what the README shows rather than a copy of
 * it. Throws when no block or several blocks match.
 */
export function readmeBlock(language: string, marker: string): string {
  const readme = readFileSync(readmePath, "utf8");
  const fence = new RegExp(`^\`\`\`${language}\\n([\\s\\S]*?)^\`\`\`$`, "gm");
  const blocks = [...readme.matchAll(fence)]
    .map((match) => match[1] ?? "")
    .filter((block) => block.includes(marker));
  if (blocks.length !== 1) {
    throw new Error(
      `README.md has ${blocks.length} ${language} blocks with "${marker}"; expected one`,
    );
  }
  return blocks[0] ?? "";
}

/**
 * The commands of a shell block: its paragraphs, since the README separates
 * commands with a blank line. Comment-only paragraphs are dropped.
 */
export function commandsOf(block: string): string[] {
  return block
    .split(/\n\s*\n/)
    .map((paragraph) => paragraph.trim())
    .filter((paragraph) =>
      paragraph.split("\n").some((line) => !line.startsWith("#")),
    );
}

/** `text` with the README's address replaced by a test server's. */
export function atAddress(text: string, address: string): string {
  return text.replaceAll(readmeAddress, address);
}
