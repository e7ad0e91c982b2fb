// Screenshots for e2e/artifacts/: each page at desktop and phone width.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'artifacts');
export const DESKTOP = { width: 1100, height: 900 };
export const PHONE = { width: 390, height: 844 };

/** Full-page screenshots of `page` at desktop and phone width (`<name>-desktop.png`, `<name>-phone.png`). */
export async function shoot(page, name) {
    mkdirSync(ARTIFACTS, { recursive: true });
    const before = page.viewportSize();
    for (const [suffix, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
        await page.setViewportSize(viewport);
        await page.screenshot({ path: path.join(ARTIFACTS, `${name}-${suffix}.png`), fullPage: true });
    }
    if (before) await page.setViewportSize(before);
}
