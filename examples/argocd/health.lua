-- Argo CD health check for apikeys.dev ApiToken and ApiKey (same script for both).
-- Register it in argocd-cm under
--   resource.customizations.health.apikeys.dev_ApiToken and
--   resource.customizations.health.apikeys.dev_ApiKey
-- Healthy: Ready=True. Degraded: expired, a foreign Secret in the way
-- (SecretConflict) or an invalid spec. Suspended: spec.disabled.
-- Progressing: everything else (issuing, waiting for the key or its owner).
-- Tested by tests/operator/manifests/argocd_health.rs.
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= nil and obj.status.observedGeneration < generation then
  hs.message = "Waiting for the operator to act on the latest spec"
  return hs
end
local ready = nil
local expired = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Expired" then
    expired = condition
  end
end
if expired ~= nil and expired.status == "True" then
  hs.status = "Degraded"
  hs.message = expired.message or "The token's value expired"
  return hs
end
if ready == nil then
  return hs
end
local message = ready.message or ""
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
elseif ready.reason == "Expired" or ready.reason == "SecretConflict" or ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. message
elseif ready.reason == "Disabled" then
  hs.status = "Suspended"
  hs.message = message
else
  hs.status = "Progressing"
  hs.message = (ready.reason or "") .. ": " .. message
end
return hs
