// Kept in step with package.json by test/cli/version.test.ts.
export const SHOAL_VERSION = '0.1.0'
