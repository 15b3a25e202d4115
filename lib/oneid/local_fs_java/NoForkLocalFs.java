package oneid.hadoop;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.ChecksumFs;

/** What Hadoop's {@code LocalFs} is (with checksum files), over {@link NoForkRawLocalFs}. */
public class NoForkLocalFs extends ChecksumFs {
  public NoForkLocalFs(URI uri, Configuration conf) throws IOException, URISyntaxException {
    super(new NoForkRawLocalFs(uri, conf));
  }
}
