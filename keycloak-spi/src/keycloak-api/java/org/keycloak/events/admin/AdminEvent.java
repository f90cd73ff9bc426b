package org.keycloak.events.admin;

import java.util.Map;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public class AdminEvent {
    private String id;
    private long time;
    private String realmId;
    private String realmName;
    private AuthDetails authDetails;
    private ResourceType resourceType;
    private String resourceTypeAsString;
    private OperationType operationType;
    private String resourcePath;
    private String representation;
    private String error;
    private Map<String, String> details;

    public String getId() { return id; }
    public void setId(String id) { this.id = id; }
    public long getTime() { return time; }
    public void setTime(long time) { this.time = time; }
    public String getRealmId() { return realmId; }
    public void setRealmId(String realmId) { this.realmId = realmId; }
    public String getRealmName() { return realmName; }
    public void setRealmName(String realmName) { this.realmName = realmName; }
    public AuthDetails getAuthDetails() { return authDetails; }
    public void setAuthDetails(AuthDetails authDetails) { this.authDetails = authDetails; }
    public ResourceType getResourceType() { return resourceType; }
    public void setResourceType(ResourceType resourceType) {
        this.resourceType = resourceType;
        this.resourceTypeAsString = resourceType == null ? null : resourceType.name();
    }
    public String getResourceTypeAsString() { return resourceTypeAsString; }
    public void setResourceTypeAsString(String value) { this.resourceTypeAsString = value; }
    public OperationType getOperationType() { return operationType; }
    public void setOperationType(OperationType operationType) { this.operationType = operationType; }
    public String getResourcePath() { return resourcePath; }
    public void setResourcePath(String resourcePath) { this.resourcePath = resourcePath; }
    public String getRepresentation() { return representation; }
    public void setRepresentation(String representation) { this.representation = representation; }
    public String getError() { return error; }
    public void setError(String error) { this.error = error; }
    public Map<String, String> getDetails() { return details; }
    public void setDetails(Map<String, String> details) { this.details = details; }
}
