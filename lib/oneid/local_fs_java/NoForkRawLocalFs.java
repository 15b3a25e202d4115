package oneid.hadoop;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.DelegateToFileSystem;
import org.apache.hadoop.fs.FsServerDefaults;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.local.LocalConfigKeys;

/**
 * What Hadoop's {@code RawLocalFs} is (the local file system for FileContext, which Delta's log
 * store renames through), over {@link NoForkRawLocalFileSystem}.
 */
public class NoForkRawLocalFs extends DelegateToFileSystem {
  public NoForkRawLocalFs(URI uri, Configuration conf) throws IOException, URISyntaxException {
    super(uri, new NoForkRawLocalFileSystem(), conf, "file", false);
  }

  @Override
  public int getUriDefaultPort() {
    return -1;
  }

  @Override
  public FsServerDefaults getServerDefaults(Path f) throws IOException {
    return LocalConfigKeys.getServerDefaults();
  }

  @Override
  public FsServerDefaults getServerDefaults() throws IOException {
    return LocalConfigKeys.getServerDefaults();
  }

  @Override
  public boolean isValidName(String src) {
    return true;
  }
}
