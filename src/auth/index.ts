export { type AuthTable, loadAuthFile, parseAuthFile, type TokenGrant } from "./auth-file.ts";
export { type AuthLogger, type Identity, reloadOnSighup, TokenAuthority, tokenSha256 } from "./authority.ts";
export { type KeyScope, type OpRule, opRules, type Role, roleIncludes, roles } from "./permissions.ts";
