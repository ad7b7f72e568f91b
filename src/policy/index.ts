export {
  MANAGEMENT_SCOPES,
  scopeCovers,
  hasScope,
  missingScopes,
  isManagementScope,
  type ManagementScope,
} from './scopes.js';
