export {
  MANAGEMENT_SCOPES,
  scopeCovers,
  hasScope,
  missingScopes,
  isManagementScope,
  secretScope,
  SECRET_SCOPES,
  type SecretScope,
  type ManagementScope,
} from './scopes.js';
