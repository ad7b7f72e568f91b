export {
  MANAGEMENT_SCOPES,
  scopeCovers,
  hasScope,
  missingScopes,
  isManagementScope,
  secretScope,
  pathGrant,
  type PathGrant,
  SECRET_SCOPES,
  type SecretScope,
  type ManagementScope,
} from './scopes.js';
