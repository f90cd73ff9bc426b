package org.keycloak.events;

import java.util.Map;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public class Event {
    private String id;
    private long time;
    private EventType type;
    private String realmId;
    private String realmName;
    private String clientId;
    private String userId;
    private String sessionId;
    private String ipAddress;
    private String error;
    private Map<String, String> details;

    public String getId() { return id; }
    public void setId(String id) { this.id = id; }
    public long getTime() { return time; }
    public void setTime(long time) { this.time = time; }
    public EventType getType() { return type; }
    public void setType(EventType type) { this.type = type; }
    public String getRealmId() { return realmId; }
    public void setRealmId(String realmId) { this.realmId = realmId; }
    public String getRealmName() { return realmName; }
    public void setRealmName(String realmName) { this.realmName = realmName; }
    public String getClientId() { return clientId; }
    public void setClientId(String clientId) { this.clientId = clientId; }
    public String getUserId() { return userId; }
    public void setUserId(String userId) { this.userId = userId; }
    public String getSessionId() { return sessionId; }
    public void setSessionId(String sessionId) { this.sessionId = sessionId; }
    public String getIpAddress() { return ipAddress; }
    public void setIpAddress(String ipAddress) { this.ipAddress = ipAddress; }
    public String getError() { return error; }
    public void setError(String error) { this.error = error; }
    public Map<String, String> getDetails() { return details; }
    public void setDetails(Map<String, String> details) { this.details = details; }
}
