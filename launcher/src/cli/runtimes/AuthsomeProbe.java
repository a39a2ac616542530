// The doctor's Java probe (`authsome doctor --sandbox`): one HTTPS GET with the JDK's own
// client and trust store. The .class beside it is this file compiled for any JRE 8+:
//   javac --release 8 -g:none AuthsomeProbe.java
// (no compiler is needed where the doctor runs: a JRE runs the class as it is).
public class AuthsomeProbe {
    public static void main(String[] args) throws Exception {
        java.net.HttpURLConnection connection =
                (java.net.HttpURLConnection) new java.net.URL(args[0]).openConnection();
        connection.setConnectTimeout(20000);
        connection.setReadTimeout(20000);
        int status = connection.getResponseCode();
        System.out.println(status);
        System.exit(status == 200 ? 0 : 1);
    }
}
